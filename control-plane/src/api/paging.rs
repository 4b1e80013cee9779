//! List paging: the `?page=&per_page=` of a listing, and the documented list shape.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::ApiQuery;
use crate::store::Page;

const DEFAULT_PER_PAGE: u64 = 50;
const MAX_PER_PAGE: u64 = 200;

/// Where a page of a listing starts: `?page=` counts from 1, `?per_page=` is 1-200.
#[derive(Debug, Clone, Copy)]
pub struct PageWindow {
    pub page: u64,
    pub per_page: u64,
}

/// The paging parameters of a listing's query, before their ranges are checked.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    #[param(minimum = 1, example = 1)]
    page: Option<u64>,
    #[param(minimum = 1, maximum = 200, example = 50)]
    per_page: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageWindow {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiQuery(query) = ApiQuery::<PageQuery>::from_request_parts(parts, state).await?;
        Self::from_query(query.page, query.per_page)
    }
}

impl PageWindow {
    fn from_query(page: Option<u64>, per_page: Option<u64>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 {
            return Err(ApiError::validation("`page` starts at 1"));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(ApiError::validation("`per_page` must be 1 to 200"));
        }
        Ok(Self { page, per_page })
    }

    pub fn offset(self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    /// The documented list shape: `{"items", "total", "page", "per_page"}`.
    pub fn list<T: serde::Serialize>(self, page: Page<T>) -> serde_json::Value {
        serde_json::json!({
            "items": page.items,
            "total": page.total,
            "page": self.page,
            "per_page": self.per_page,
        })
    }
}

/// An unpaged listing in the documented list shape: every item on page 1.
pub fn whole_list<T: serde::Serialize>(items: &[T]) -> serde_json::Value {
    serde_json::json!({
        "items": items,
        "total": items.len(),
        "page": 1,
        "per_page": items.len(),
    })
}
