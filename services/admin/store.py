"""What the admin API reads and writes in the database: one store per resource (services/admin/stores/),
one object for the routes."""

from __future__ import annotations

from services.admin.stores.admin_events import AdminEventsStore
from services.admin.stores.apps import AppsStore
from services.admin.stores.audit import AuditStore
from services.admin.stores.dashboard_sessions import DashboardSessionsStore
from services.admin.stores.integrations import IntegrationsStore
from services.admin.stores.privacy import PrivacyStore
from services.admin.stores.reports import ReportsStore
from services.admin.stores.skan import SkanStore


class AdminStore(AppsStore, IntegrationsStore, SkanStore, AuditStore, PrivacyStore, AdminEventsStore, ReportsStore,
                 DashboardSessionsStore):
    """Apps, keys, links, integrations, SKAN schemas and postbacks, audit, attribution, erasure, and the
    dashboard's sessions."""
