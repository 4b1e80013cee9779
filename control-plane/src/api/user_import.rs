//! `POST /api/v1/users/import`: users and their group memberships from CSV (`text/csv`, a
//! header row naming the columns) or JSON (an array of objects), checked row by row. With any
//! row refused nothing is applied and the answer reports every refusal; `?dry_run=true` only
//! checks. The columns are those of `GET /api/v1/users/export`, so an export imports as is.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::openapi::shapes::{ImportReport, UserRow};
use super::permission::ManageUsers;
use super::reach::Reach;
use super::user_export::COLUMNS;
use super::AppState;
use crate::accounts::group::Group;
use crate::accounts::tenant::Tenant;
use crate::accounts::user::{
    validate_email, validate_name, validate_username, Role, User, UserStatus,
};
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::identity::password::HashRefused;

/// The largest file taken, and the most rows in it.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
const MAX_IMPORT_ROWS: usize = 100_000;
/// The most groups one row names.
const MAX_GROUPS_PER_ROW: usize = 100;
/// Imports checked or applied at once on this replica: each holds a file's rows in memory
/// and, applied, the database's write for as long as it takes.
static RUNNING_IMPORTS: Semaphore = Semaphore::const_new(2);
/// Refusals listed in an answer; the count covers them all.
const MAX_LISTED_REFUSALS: usize = 1000;

/// The column a file may have beside those of an export.
const PASSWORD_HASH: &str = "password_hash";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportOptions {
    /// Only check the file.
    #[serde(default)]
    dry_run: bool,
}

/// One row as read, before any check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    id: Option<String>,
    username: Option<String>,
    email: Option<String>,
    name: Option<String>,
    role: Option<String>,
    status: Option<String>,
    tenant_id: Option<String>,
    groups: Option<GroupList>,
    organization: Option<String>,
    department: Option<String>,
    employee_id: Option<String>,
    /// A bcrypt or Argon2id hash from an older system; plain passwords are not imported.
    password_hash: Option<String>,
    /// Exports carry it; an imported user is created now.
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
}

/// Group ids or names: `;`-separated in a CSV cell, an array in JSON. A CSV cell that looks
/// like a number or a boolean is still names.
#[derive(Debug)]
enum GroupList {
    Joined(String),
    Listed(Vec<String>),
}

impl<'de> Deserialize<'de> for GroupList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;

        impl<'de> Visitor<'de> for Names {
            type Value = GroupList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("group ids or names")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<GroupList, E> {
                Ok(GroupList::Joined(text.to_string()))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<GroupList, E> {
                Ok(GroupList::Joined(number.to_string()))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<GroupList, E> {
                Ok(GroupList::Joined(number.to_string()))
            }

            fn visit_f64<E: de::Error>(self, number: f64) -> Result<GroupList, E> {
                Ok(GroupList::Joined(number.to_string()))
            }

            fn visit_bool<E: de::Error>(self, flag: bool) -> Result<GroupList, E> {
                Ok(GroupList::Joined(flag.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GroupList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if names.len() == MAX_GROUPS_PER_ROW {
                        return Err(de::Error::custom(format!(
                            "`groups` names more than {MAX_GROUPS_PER_ROW} groups"
                        )));
                    }
                    names.push(name);
                }
                Ok(GroupList::Listed(names))
            }
        }

        deserializer.deserialize_any(Names)
    }
}

impl GroupList {
    fn names(&self) -> Vec<&str> {
        match self {
            Self::Joined(joined) => joined
                .split(';')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .collect(),
            Self::Listed(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// A row that cannot be imported, and why.
struct Refusal {
    row: usize,
    username: Option<String>,
    message: String,
}

#[utoipa::path(
    post, path = "/api/v1/users/import", tag = "users",
    params(ImportOptions),
    request_body(content(
        (Vec<UserRow> = "application/json"),
        (String = "text/csv", example = "username,email,groups\nalice,alice@example.com,engineers\n"),
    )),
    responses(
        (status = 200, description = "The dry run's report: every row could be imported", body = ImportReport),
        (status = 201, description = "Every row imported", body = ImportReport),
        (status = 400, description = "`import_rejected`: the error's `report` names each refused row; nothing was imported"),
        (status = 409, description = "`import_conflict`: a name was taken while the file was checked"),
    )
)]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller<ManageUsers>,
    ApiQuery(options): ApiQuery<ImportOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let _turn = RUNNING_IMPORTS
        .try_acquire()
        .map_err(|_| ApiError::busy("other imports are running; try again when they end"))?;
    let content_type = content_type(&headers);
    let rows = tokio::task::spawn_blocking(move || read_rows(&content_type, &body))
        .await
        .map_err(|_| ApiError::busy("the file could not be read"))??;
    let total = rows.len();
    let rules = ImportRules::load(&state, &caller).await?;
    let mut refusals = Vec::new();
    let mut users = Vec::with_capacity(rows.len());
    let mut names = HashSet::new();
    let mut emails = HashSet::new();
    let mut ids = HashSet::new();
    let mut given_ids = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let number = index + 1;
        let username = row.as_ref().ok().and_then(|row| row.username.clone());
        let id_given = row.as_ref().is_ok_and(|row| row.id.is_some());
        let refuse = |message: String| Refusal {
            row: number,
            username: username.clone(),
            message,
        };
        match row.and_then(|row| rules.user(&state, row)) {
            Ok(user) => {
                if !names.insert(user.username.to_lowercase()) {
                    refusals.push(refuse("`username` appears twice in the file".into()));
                } else if !ids.insert(user.id.clone()) {
                    refusals.push(refuse("`id` appears twice in the file".into()));
                } else if user
                    .email
                    .as_ref()
                    .is_some_and(|email| !emails.insert(email.clone()))
                {
                    refusals.push(refuse("`email` appears twice in the file".into()));
                } else {
                    if id_given {
                        given_ids.push(user.id.clone());
                    }
                    users.push((number, user));
                }
            }
            Err(message) => refusals.push(refuse(message)),
        }
    }
    refusals.extend(already_taken(&state, &users, &given_ids).await?);
    refusals.sort_by_key(|refusal| refusal.row);
    let accepted = if refusals.is_empty() { users.len() } else { 0 };
    let report = |applied: bool| {
        json!({
            "dry_run": options.dry_run,
            "applied": applied,
            "rows": total,
            "accepted": accepted,
            "rejected": refusals.len(),
            "refusals": refusals.iter().take(MAX_LISTED_REFUSALS).map(|refusal| json!({
                "row": refusal.row,
                "username": refusal.username,
                "message": refusal.message,
            })).collect::<Vec<_>>(),
        })
    };
    if !refusals.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "import_rejected",
            format!(
                "{} of the rows cannot be imported, so none was; see `report`",
                refusals.len()
            ),
        )
        .with_field("report", report(false)));
    }
    if options.dry_run {
        return Ok((StatusCode::OK, Json(report(false))));
    }
    let users: Vec<User> = users.into_iter().map(|(_, user)| user).collect();
    let audits: Vec<_> = users
        .iter()
        .map(|user| {
            caller
                .audit("user.created", user.id.as_str(), json!({"via": "import"}))
                .created(user)
                .in_tenant(user.audit_tenant())
        })
        .collect();
    match state.store.import_users(&users, &audits).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(report(true)))),
        Err(crate::store::StoreError::Conflict(what)) => Err(ApiError::conflict(
            "import_conflict",
            format!("a {what} was taken while the file was checked; nothing was imported"),
        )),
        Err(other) => Err(other.into()),
    }
}

/// The media type of the body, without its parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The file's rows, each read or refused; 400 for a file that cannot be read at all, or
/// holds more than [`MAX_IMPORT_ROWS`].
fn read_rows(content_type: &str, body: &[u8]) -> Result<Vec<Result<ImportRow, String>>, ApiError> {
    let rows = match content_type {
        "text/csv" => csv_rows(body)?,
        "application/json" => json_rows(body)?,
        _ => {
            return Err(ApiError::validation(
                "send the users as `text/csv` or `application/json`",
            ))
        }
    };
    if rows.len() > MAX_IMPORT_ROWS {
        return Err(too_many_rows());
    }
    Ok(rows)
}

fn too_many_rows() -> ApiError {
    ApiError::validation(format!("a file holds at most {MAX_IMPORT_ROWS} users"))
}

fn csv_rows(body: &[u8]) -> Result<Vec<Result<ImportRow, String>>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|error| ApiError::validation(format!("the CSV header cannot be read: {error}")))?;
    let known = |column: &str| COLUMNS.contains(&column) || column == PASSWORD_HASH;
    if let Some(unknown) = header.iter().find(|column| !known(column)) {
        return Err(ApiError::validation(format!(
            "the CSV column {unknown:?} is not one of {}, {PASSWORD_HASH}",
            COLUMNS.join(", ")
        )));
    }
    if !header.iter().any(|column| column == "username") {
        return Err(ApiError::validation(
            "the CSV header must name a `username` column",
        ));
    }
    Ok(reader
        .deserialize::<ImportRow>()
        .take(MAX_IMPORT_ROWS + 1)
        .map(|row| row.map_err(|error| format!("the row cannot be read: {error}")))
        .collect())
}

/// The rows of a JSON array, each read on its own, stopping past [`MAX_IMPORT_ROWS`].
fn json_rows(body: &[u8]) -> Result<Vec<Result<ImportRow, String>>, ApiError> {
    struct Rows;

    impl<'de> Visitor<'de> for Rows {
        type Value = Vec<Result<ImportRow, String>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of users")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut rows = Vec::new();
            while let Some(value) = seq.next_element::<serde_json::Value>()? {
                if rows.len() == MAX_IMPORT_ROWS {
                    return Err(de::Error::custom(TOO_MANY_ROWS));
                }
                rows.push(serde_json::from_value(value).map_err(|error| error.to_string()));
            }
            Ok(rows)
        }
    }

    let mut reader = serde_json::Deserializer::from_slice(body);
    let rows = reader
        .deserialize_seq(Rows)
        .and_then(|rows| reader.end().map(|()| rows));
    rows.map_err(|error| {
        if error.to_string().starts_with(TOO_MANY_ROWS) {
            too_many_rows()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the body must be a JSON array of users: {error}"),
            )
        }
    })
}

/// How [`json_rows`] stops a file with too many rows.
const TOO_MANY_ROWS: &str = "too many rows";

/// The rows whose id (of those given in the file), username or email another user already
/// has.
async fn already_taken(
    state: &AppState,
    users: &[(usize, User)],
    given_ids: &[UserId],
) -> Result<Vec<Refusal>, ApiError> {
    let usernames: Vec<String> = users
        .iter()
        .map(|(_, user)| user.username.clone())
        .collect();
    let emails: Vec<String> = users
        .iter()
        .filter_map(|(_, user)| user.email.clone())
        .collect();
    let (taken_names, taken_emails) = state.store.taken_names(&usernames, &emails).await?;
    let mut taken_ids = HashSet::new();
    for id in given_ids {
        match state.store.user(id).await {
            Ok(_) => {
                taken_ids.insert(id.clone());
            }
            Err(crate::store::StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(users
        .iter()
        .filter_map(|(row, user)| {
            let message = if taken_ids.contains(&user.id) {
                "`id` belongs to another user"
            } else if taken_names.contains(&user.username.to_lowercase()) {
                "`username` is already taken"
            } else if user
                .email
                .as_ref()
                .is_some_and(|email| taken_emails.contains(email))
            {
                "`email` belongs to another user"
            } else {
                return None;
            };
            Some(Refusal {
                row: *row,
                username: Some(user.username.clone()),
                message: message.into(),
            })
        })
        .collect())
}

/// What decides whether a row may become a user: the caller's role and reach, and the
/// tenants and groups within it.
struct ImportRules {
    role: Role,
    reach: Reach,
    tenants: HashMap<String, Tenant>,
    groups: Vec<Group>,
}

impl ImportRules {
    async fn load(state: &AppState, caller: &Caller<ManageUsers>) -> Result<Self, ApiError> {
        let reach = caller.reach();
        let tenants = state
            .store
            .tenants(reach.only_tenant(), 0, u64::MAX)
            .await?
            .items
            .into_iter()
            .map(|tenant| (tenant.id.clone(), tenant))
            .collect();
        let groups = state
            .store
            .groups()
            .await?
            .into_iter()
            .filter(|group| reach.covers_group(group))
            .collect();
        Ok(Self {
            role: caller.0.role,
            reach,
            tenants,
            groups,
        })
    }

    /// The user a row describes, or why it cannot be one.
    fn user(&self, state: &AppState, row: ImportRow) -> Result<User, String> {
        let username = row.username.ok_or("`username` is missing")?;
        validate_username(&username).map_err(|e| e.to_string())?;
        let id = match row.id {
            Some(id) => UserId::parse(&id)
                .ok_or("`id` must be u_ and 1 to 64 lowercase letters and digits")?,
            None => UserId::generate(),
        };
        let tenant = match row
            .tenant_id
            .or_else(|| self.reach.only_tenant().map(str::to_string))
        {
            Some(id) => Some(
                self.tenants
                    .get(&id)
                    .ok_or(format!("`tenant_id` names no tenant {id:?}"))?,
            ),
            None => None,
        };
        let role = match row.role {
            Some(name) => Role::parse(&name).ok_or(format!(
                "`role` {name:?} is not one of admin, tenant_admin, operator, auditor, user"
            ))?,
            None => tenant.map_or(Role::User, |tenant| tenant.default_role),
        };
        if !self.role.may_grant(role) {
            return Err(format!(
                "`role` {} cannot be granted by a {}",
                role.as_str(),
                self.role.as_str()
            ));
        }
        if role == Role::TenantAdmin && tenant.is_none() {
            return Err("`tenant_id` is required for the role tenant_admin".into());
        }
        let status = match row.status.as_deref() {
            None | Some("active") => UserStatus::Active,
            Some("suspended") => UserStatus::Suspended,
            Some(other) => return Err(format!("`status` {other:?} is not active or suspended")),
        };
        let groups = match row.groups {
            Some(list) => self.groups_named(&list, tenant)?,
            None => tenant
                .and_then(|tenant| tenant.default_group_id.clone())
                .map(|group| vec![group.to_string()])
                .unwrap_or_default(),
        };
        let password_hash = match row.password_hash {
            Some(hash) => match state.passwords.check_hash(&hash) {
                Ok(()) => Some(hash),
                Err(HashRefused::Unknown) => {
                    return Err("`password_hash` must be a bcrypt or Argon2id PHC hash".into())
                }
                Err(HashRefused::TooCostly) => {
                    return Err("`password_hash` costs too much to verify".into())
                }
            },
            None => None,
        };
        let checked =
            |field: &'static str,
             value: Option<String>,
             check: fn(&str) -> Result<(), crate::domain::validation::InvalidField>| {
                match value {
                    Some(text) => check(&text)
                        .map(|()| Some(text))
                        .map_err(|invalid| format!("`{field}` {}", invalid.problem)),
                    None => Ok(None),
                }
            };
        Ok(User {
            email: checked("email", row.email, validate_email)?.map(|email| email.to_lowercase()),
            name: checked("name", row.name, validate_name)?,
            organization: checked("organization", row.organization, validate_name)?,
            department: checked("department", row.department, validate_name)?,
            employee_id: checked("employee_id", row.employee_id, validate_name)?,
            status,
            tenant_id: tenant.map(|tenant| tenant.id.clone()),
            groups,
            password_hash,
            ..User::new(id, username, role, now())
        })
    }

    /// The ids of the groups `list` names by id or name, within reach and open to members of
    /// `tenant`.
    fn groups_named(
        &self,
        list: &GroupList,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<String>, String> {
        let names = list.names();
        if names.len() > MAX_GROUPS_PER_ROW {
            return Err(format!(
                "`groups` names more than {MAX_GROUPS_PER_ROW} groups"
            ));
        }
        let mut ids: Vec<String> = Vec::new();
        for name in names {
            let group = self
                .groups
                .iter()
                .find(|group| group.id.as_str() == name || group.name == name)
                .ok_or(format!("`groups` names no group {name:?}"))?;
            if group
                .tenant_id
                .as_deref()
                .is_some_and(|own| Some(own) != tenant.map(|tenant| tenant.id.as_str()))
            {
                return Err(format!(
                    "group {name:?} belongs to another tenant than the user"
                ));
            }
            if !ids.iter().any(|id| id == group.id.as_str()) {
                ids.push(group.id.to_string());
            }
        }
        Ok(ids)
    }
}
