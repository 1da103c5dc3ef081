"""Create the iteration counter row every write increments."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_counter(apps: Any, schema_editor: Any) -> None:
    Counter = apps.get_model("spread_core", "Counter")
    Counter.objects.get_or_create(name="iteration", defaults={"value": 0})


class Migration(migrations.Migration):
    dependencies = [("spread_core", "0001_initial")]
    operations = [migrations.RunPython(create_counter, migrations.RunPython.noop)]
