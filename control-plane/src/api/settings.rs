//! The `rate_limits` and `quotas` objects of request bodies. Like every nullable field:
//! absent leaves a setting as it is, `null` makes it inherit, a value sets it; `null` for
//! the whole object makes every setting in it inherit.

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::extract::nullable;
use crate::domain::validation::InvalidField;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::{LimitMode, RateLimits};

/// A body field holding a settings object.
pub type SettingsField<T> = Option<Option<T>>;

/// A [`SettingsField`]: like [`nullable`], but only a JSON object is a value. Serde would
/// also take an array of the fields in their declared order (`[5, 60]` as five a second and
/// sixty a minute), which the contract does not offer.
pub fn settings_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<SettingsField<T>, D::Error> {
    Option::<Object<T>>::deserialize(deserializer).map(|value| Some(value.map(|o| o.0)))
}

/// A struct read from a JSON object only.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(OnlyMap(deserializer)).map(Object)
    }
}

/// Hands every visitor a map, so that a struct refuses the array form; errors keep the
/// field paths the wrapped deserializer tracks.
struct OnlyMap<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for OnlyMap<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsPatch {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000)]
    requests_per_second: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000)]
    requests_per_minute: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000)]
    requests_per_hour: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000)]
    burst: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<LimitMode>)]
    mode: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotasPatch {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_000_u64)]
    monthly_requests: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_000_u64)]
    monthly_bandwidth_mb: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_000_u64)]
    storage_quota_mb: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u8>, minimum = 1, maximum = 28)]
    reset_day: Option<Option<i64>>,
}

/// `current` with the body's `rate_limits` applied and validated.
pub fn rate_limits(
    field: SettingsField<RateLimitsPatch>,
    current: RateLimits,
) -> Result<RateLimits, ApiError> {
    let patch = match field {
        None => return Ok(current),
        Some(None) => return Ok(RateLimits::default()),
        Some(Some(patch)) => patch,
    };
    let mode = match patch.mode {
        Some(Some(mode)) => Some(LimitMode::parse(&mode).ok_or_else(|| {
            ApiError::validation("`rate_limits.mode` must be local, fast or exact")
        })?),
        Some(None) => None,
        None => current.mode,
    };
    let limits = RateLimits {
        requests_per_second: merge(patch.requests_per_second, current.requests_per_second),
        requests_per_minute: merge(patch.requests_per_minute, current.requests_per_minute),
        requests_per_hour: merge(patch.requests_per_hour, current.requests_per_hour),
        burst: merge(patch.burst, current.burst),
        mode,
    };
    limits
        .validate()
        .map_err(|e| in_object("rate_limits", &e))?;
    Ok(limits)
}

/// `current` with the body's `quotas` applied and validated.
pub fn quotas(field: SettingsField<QuotasPatch>, current: Quotas) -> Result<Quotas, ApiError> {
    let patch = match field {
        None => return Ok(current),
        Some(None) => return Ok(Quotas::default()),
        Some(Some(patch)) => patch,
    };
    let reset_day = merge(patch.reset_day, current.reset_day.map(u64::from))
        .map(|day| u8::try_from(day).unwrap_or(u8::MAX));
    let quotas = Quotas {
        monthly_requests: merge(patch.monthly_requests, current.monthly_requests),
        monthly_bandwidth_mb: merge(patch.monthly_bandwidth_mb, current.monthly_bandwidth_mb),
        storage_quota_mb: merge(patch.storage_quota_mb, current.storage_quota_mb),
        reset_day,
    };
    quotas.validate().map_err(|e| in_object("quotas", &e))?;
    Ok(quotas)
}

/// Negative numbers become too large ones, so the range check refuses them.
fn merge(patch: Option<Option<i64>>, current: Option<u64>) -> Option<u64> {
    match patch {
        Some(value) => value.map(|v| u64::try_from(v).unwrap_or(u64::MAX)),
        None => current,
    }
}

fn in_object(object: &str, error: &InvalidField) -> ApiError {
    ApiError::validation(format!("`{object}.{}` {}", error.field, error.problem))
}
