"""URLs of the raw API; include them at any prefix: ``path("", include("spread_api.urls"))``."""

from __future__ import annotations

from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .history import HistoryRootView, TopicHistoryView
from .replication import ReplicationStatusView
from .views import DeviceTokenView, RawRootView, RawTopicView, UserTokenObtainPairView, UserTokenRefreshView


class AnyPathConverter:
    """Like Django's ``path`` converter, but also matches control characters such as newlines, so
    the view (not a bare HTML 404) rejects them with a JSON 400."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyPathConverter, "spreadpath")

urlpatterns = [
    path("raw/<spreadpath:topic>", RawTopicView.as_view(), name="spread-raw"),
    path("raw/", RawRootView.as_view(), {"topic": ""}, name="spread-raw-root"),
    path("history/<spreadpath:topic>", TopicHistoryView.as_view(), name="spread-history"),
    path("history/", HistoryRootView.as_view(), {"topic": ""}, name="spread-history-root"),
    path("api/replication/", ReplicationStatusView.as_view(), name="spread-replication-status"),
    path("jwttoken", DeviceTokenView.as_view(), name="spread-jwttoken"),
    path("api/token/", UserTokenObtainPairView.as_view(), name="spread-token-obtain"),
    path("api/token/refresh/", UserTokenRefreshView.as_view(), name="spread-token-refresh"),
    path("api/schema/", SpectacularAPIView.as_view(), name="spread-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="spread-schema"), name="spread-docs"),
]
