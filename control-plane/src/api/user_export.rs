//! `GET /api/v1/users/export?format=csv|json`: every user within the caller's reach, streamed
//! a page of the store at a time, in the columns `POST /api/v1/users/import` takes. Never a
//! password hash or any other secret.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::openapi::shapes::UserRow;
use super::permission::ReadUsers;
use super::AppState;
use crate::accounts::user::User;
use crate::store::{Store, UserQuery};

/// Users read from the store at a time.
const EXPORT_PAGE: u64 = 500;
/// Pages produced ahead of what the client has taken.
const PAGES_AHEAD: usize = 2;

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    #[default]
    Json,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportOptions {
    #[serde(default)]
    format: ExportFormat,
}

/// The columns, in the order of [`ExportedUser`]'s fields; an import takes them all.
pub(super) const COLUMNS: [&str; 12] = [
    "id",
    "username",
    "email",
    "name",
    "role",
    "status",
    "tenant_id",
    "groups",
    "organization",
    "department",
    "employee_id",
    "created_at",
];

/// A user as exported; `groups` is an array in JSON and `;`-separated in CSV.
#[derive(Serialize)]
struct ExportedUser<'a, G> {
    id: &'a str,
    username: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    role: &'a str,
    status: &'a str,
    tenant_id: Option<&'a str>,
    groups: G,
    organization: Option<&'a str>,
    department: Option<&'a str>,
    employee_id: Option<&'a str>,
    created_at: String,
}

impl ExportedUser<'_, String> {
    /// The row with each free-text cell that a spreadsheet would run as a formula (one
    /// starting with `=`, `+`, `-`, `@`, a tab or a carriage return) quoted by a leading `'`.
    fn as_spreadsheet_text(&self) -> [String; 12] {
        let text = |cell: Option<&str>| {
            let cell = cell.unwrap_or_default();
            if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{cell}")
            } else {
                cell.to_string()
            }
        };
        [
            self.id.to_string(),
            text(Some(self.username)),
            text(self.email),
            text(self.name),
            self.role.to_string(),
            self.status.to_string(),
            text(self.tenant_id),
            text(Some(&self.groups)),
            text(self.organization),
            text(self.department),
            text(self.employee_id),
            self.created_at.clone(),
        ]
    }
}

fn exported<G>(user: &User, groups: G) -> ExportedUser<'_, G> {
    ExportedUser {
        id: user.id.as_str(),
        username: &user.username,
        email: user.email.as_deref(),
        name: user.name.as_deref(),
        role: user.role.as_str(),
        status: user.status.as_str(),
        tenant_id: user.tenant_id.as_deref(),
        groups,
        organization: user.organization.as_deref(),
        department: user.department.as_deref(),
        employee_id: user.employee_id.as_deref(),
        created_at: user.created_at.to_rfc3339(),
    }
}

#[utoipa::path(
    get, path = "/api/v1/users/export", tag = "users",
    params(ExportOptions),
    responses((status = 200, description = "Every user within reach, streamed", content(
        (Vec<UserRow> = "application/json"),
        (String = "text/csv"),
    )))
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller<ReadUsers>,
    ApiQuery(options): ApiQuery<ExportOptions>,
) -> Result<Response, ApiError> {
    let query = UserQuery {
        confined_to: caller.reach().only_tenant().map(str::to_string),
        limit: EXPORT_PAGE,
        ..UserQuery::default()
    };
    // The first page is read before answering, so a store that is down answers 503.
    let first = state.store.users(&query).await?;
    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(PAGES_AHEAD);
    let format = options.format;
    tokio::spawn(async move {
        let mut encoder = Encoder::new(format);
        let mut page = first.items;
        let mut offset = 0;
        loop {
            let last = (page.len() as u64) < EXPORT_PAGE;
            let chunk = encoder.page(&page, last);
            if sender.send(Ok(chunk)).await.is_err() || last {
                return;
            }
            offset += EXPORT_PAGE;
            match next_page(state.store.as_ref(), &query, offset).await {
                Some(next) => page = next,
                // The client sees the answer end short of its closing line.
                None => return,
            }
        }
    });
    let (content_type, file) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "users.csv"),
        ExportFormat::Json => ("application/json", "users.json"),
    };
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(ReceiverStream::new(receiver)),
    )
        .into_response())
}

async fn next_page(store: &dyn Store, query: &UserQuery, offset: u64) -> Option<Vec<User>> {
    let query = UserQuery {
        offset,
        ..query.clone()
    };
    match store.users(&query).await {
        Ok(page) => Some(page.items),
        Err(error) => {
            tracing::error!(%error, offset, "a user export stopped: the store failed");
            None
        }
    }
}

/// Writes pages of users as one CSV file or one JSON array.
struct Encoder {
    format: ExportFormat,
    started: bool,
}

impl Encoder {
    fn new(format: ExportFormat) -> Self {
        Self {
            format,
            started: false,
        }
    }

    /// `users` encoded after what came before; `last` closes the file.
    fn page(&mut self, users: &[User], last: bool) -> Bytes {
        let first = !self.started;
        self.started = true;
        match self.format {
            ExportFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::new());
                if first {
                    if let Err(error) = writer.write_record(COLUMNS) {
                        tracing::error!(%error, "the CSV header cannot be written");
                    }
                }
                for user in users {
                    let row = exported(user, user.groups.join(";"));
                    if let Err(error) = writer.serialize(row.as_spreadsheet_text()) {
                        tracing::error!(%error, user = %user.id, "a user cannot be written as CSV");
                    }
                }
                Bytes::from(writer.into_inner().unwrap_or_default())
            }
            ExportFormat::Json => {
                let mut out = String::from(if first { "[" } else { "" });
                for (index, user) in users.iter().enumerate() {
                    if !first || index > 0 {
                        out.push(',');
                    }
                    out.push_str(
                        &serde_json::to_string(&exported(user, &user.groups)).unwrap_or_default(),
                    );
                }
                if last {
                    out.push(']');
                }
                Bytes::from(out)
            }
        }
    }
}
