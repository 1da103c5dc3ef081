"""URLs of the demo node: the admin, a home page, the live demo page, and the Spread API at the root."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from .views import DemoView

urlpatterns = [
    path("", TemplateView.as_view(template_name="spread_project/home.html"), name="home"),
    path("demo/", DemoView.as_view(), name="demo"),
    path("admin/", admin.site.urls),
    path("", include("spread_api.urls")),
]
