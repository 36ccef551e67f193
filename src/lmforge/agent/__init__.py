"""Tool calls (agents): the per-family tool-call markup (`TOOL_PARSERS`, picked by `--agent_template` or from the
chat template), tool-schema and argument checks shared by `lmforge check` and the server, and the `toolcall`
metric. Torch-free."""
