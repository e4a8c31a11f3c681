"""Local stand-ins for external systems, following each vendor's documented contract (vendors.md).

`emulators.segment` and `emulators.meta` are Starlette apps over inspectable, fault-injectable state;
`emulators.app` mounts both for the dev stack; `python -m emulators` serves them.
"""
