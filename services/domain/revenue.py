"""Revenue is forwarded to the networks as sent: an amount beyond the app's bound (`apps.max_revenue_amount`,
DEFAULT_MAX_REVENUE_AMOUNT unless the app sets another) is a client bug or an attack on the advertiser's
reporting, not a sale. The gateway refuses it; the admin service bounds what an app may set."""

DEFAULT_MAX_REVENUE_AMOUNT = 1_000_000.0
MAX_REVENUE_BOUND = 1e12  # the largest bound an app may set
