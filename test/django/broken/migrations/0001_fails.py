"""Requests an index, then fails: the whole migration, request included, is rolled back."""
from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_sku_index")]

    operations = [
        migrations.RunSQL(
            "SELECT perfkit.create_index_concurrently("
            "'CREATE INDEX shop_item_qty_idx ON shop_item (qty)')",
        ),
        migrations.RunPython(fail),
    ]
