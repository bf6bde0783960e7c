"""``wxkf up`` (``make up``): the shape Kubernetes runs, on one machine.

Each service is its own process on RabbitMQ and Redis, plus the WeChat simulator, with one
merged log stream and a health-checked start. Defaults make it work on a machine where
RabbitMQ and Redis run as their OS packages install them: the local broker and Redis, the
demo credentials, the simulator as WeChat's API, the images the shipped rules name, every
port on loopback; any ``WXKF_`` variable set wins.

* :mod:`services.up.plan`: the environment, ports and files of a run, checked before anything
  starts (one line per problem).
* :mod:`services.up.local_state`: what is kept between runs, and ``--fresh``.
* :mod:`services.up.processes`: the processes, their log, and stopping them.
* :mod:`services.up.run`: the command.
"""
