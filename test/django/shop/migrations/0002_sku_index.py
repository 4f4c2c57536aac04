"""Index shop_item.sku without locking writers out.

Django runs this migration in a transaction (atomic = True is the default on PostgreSQL), where
CREATE INDEX CONCURRENTLY is impossible.  perfkit records the request in the same transaction and
builds the index concurrently once the migration has committed.
"""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "SELECT perfkit.create_index_concurrently("
            "'CREATE INDEX shop_item_sku_idx ON shop_item (sku)')",
            reverse_sql="SELECT perfkit.drop_index_concurrently('shop_item_sku_idx')",
        ),
    ]
