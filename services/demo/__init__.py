"""``wxkf demo``: the whole system in one process, playing a scripted conversation.

The four services run on the embedded ``memory://`` bus and store with the shipped rules, the
WeChat simulator serves WeChat's API on its own port, and a script pushes a conversation to
the push URL over real HTTP, as WeChat does, in safe mode. Each step is printed as it
happens and checked against what WeChat delivered and the facts on the bus; then the system
keeps serving until Ctrl-C (or, with ``--exit``, ends with 0 only if every step passed).
The command is :func:`services.demo.run.main`.
"""
