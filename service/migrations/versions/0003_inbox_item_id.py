"""webhook inbox: the item a delivery is about, so a burst for one item is refreshed once

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('item_id', sa.String(length=128), nullable=True))
        batch_op.create_index('ix_inbox_item', ['source', 'item_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_item')
        batch_op.drop_column('item_id')
