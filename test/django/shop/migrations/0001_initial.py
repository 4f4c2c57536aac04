from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("sku", models.CharField(max_length=32)),
                ("qty", models.IntegerField(default=0)),
            ],
        ),
        # some rows, so that the build has something to do
        migrations.RunSQL(
            "INSERT INTO shop_item (sku, qty) SELECT 'sku-' || g, g % 7 FROM generate_series(1, 5000) g",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
