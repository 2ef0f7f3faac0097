"""kpi: per-objective problems (one objective's bad data no longer stops the others), stored attainment,
derived reach left unset when GA4 has no traffic

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kpi_objective_problems',
    sa.Column('objective_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('problem', sa.Text(), nullable=False),
    sa.Column('since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('objective_key')
    )
    with op.batch_alter_table('kpi_progress', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attainment', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('milestone_attainment', sa.Float(), nullable=True))
    with op.batch_alter_table('kpi_reach', schema=None) as batch_op:
        batch_op.alter_column('reach', existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM kpi_reach WHERE reach IS NULL")
    with op.batch_alter_table('kpi_reach', schema=None) as batch_op:
        batch_op.alter_column('reach', existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table('kpi_progress', schema=None) as batch_op:
        batch_op.drop_column('milestone_attainment')
        batch_op.drop_column('attainment')
    op.drop_table('kpi_objective_problems')
