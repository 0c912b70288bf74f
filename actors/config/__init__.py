"""The gateway config: YAML in, validated pydantic models out, in three layers:

- schema.py: the models, field by field, and how policy layers merge;
- env.py: `${NAME}` references to environment variables, remembered per field;
- loading.py: reading a file and validating it, every problem named by file and field path.

Config objects stay at the edge (the driver): actors receive the frozen specs
of actors/specs/.
"""

from actors.config.env import MAX_VALUES, field_path, interpolate_env
from actors.config.loading import json_schema, load_config, parse_config, without_value
from actors.config.schema import (
    MIN_API_KEY_LENGTH,
    ActorPlacement,
    AdmissionConfig,
    AuditConfig,
    CapabilityConfig,
    GatewayConfig,
    HealthConfig,
    HedgingConfig,
    HookListConfig,
    HooksConfig,
    HttpConfig,
    MetricsConfig,
    PlacementConfig,
    PolicyConfig,
    ProviderConfig,
    ProviderLimitsConfig,
    RetryBudgetConfig,
    RoutingConfig,
    StateConfig,
    SupervisorConfig,
    TelemetryConfig,
    TracesConfig,
    merge_policies,
)

__all__ = [
    "MAX_VALUES",
    "MIN_API_KEY_LENGTH",
    "ActorPlacement",
    "AdmissionConfig",
    "AuditConfig",
    "CapabilityConfig",
    "GatewayConfig",
    "HealthConfig",
    "HedgingConfig",
    "HookListConfig",
    "HooksConfig",
    "HttpConfig",
    "MetricsConfig",
    "PlacementConfig",
    "PolicyConfig",
    "ProviderConfig",
    "ProviderLimitsConfig",
    "RetryBudgetConfig",
    "RoutingConfig",
    "StateConfig",
    "SupervisorConfig",
    "TelemetryConfig",
    "TracesConfig",
    "field_path",
    "interpolate_env",
    "json_schema",
    "load_config",
    "merge_policies",
    "parse_config",
    "without_value",
]
