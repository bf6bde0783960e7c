from examples.extension.app import create_app
from examples.extension.settings import HistorySettings
from libs.common.observability.logging import configure_service
from libs.common.runner import serve
from libs.common.settings import load_or_exit

settings = load_or_exit(HistorySettings)
configure_service("history", settings)
serve(
    [(create_app(settings), settings.history_port)],
    host=settings.listen_host,
    shutdown_grace_s=settings.shutdown_grace_s,
    internal_port=settings.internal_port,
)
