//! [`AuditLog`] on SQL: the `audit_log` table, each entry in the chain `audit_chain` ends
//! (see `changes::audit_chain`).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::audit_pruning::{self, Pruned};
use super::columns::{escape_like, format_time, from_json, required_time, to_i64, to_u64};
use super::sql::Write;
use super::{Page, SqlStore, StoreError, Written};
use crate::changes::audit::AuditEntry;
use crate::changes::audit_chain::{
    AuditChainKey, ChainBreak, ChainWalk, ChainedColumns, ChainedEntry,
};
use crate::changes::request_context::RequestContext;
use crate::domain::ids::{AuditId, UserId};
use crate::domain::Timestamp;

/// Which audit entries a listing returns; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_user_id: Option<String>,
    pub action: Option<ActionMatch>,
    pub target: Option<String>,
    pub tenant_id: Option<String>,
    /// Entries at or after this time.
    pub since: Option<Timestamp>,
    /// Entries before this time.
    pub until: Option<Timestamp>,
}

/// How a filter matches an entry's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionMatch {
    Exact(String),
    /// Every action that starts with this (`user.` for `user.*`).
    Prefix(String),
}

/// The audit log. Every write adds its own entry; this adds entries about something that
/// changed nothing stored.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Every entry, newest first.
    async fn audit_entries(&self, offset: u64, limit: u64) -> Result<Page<AuditEntry>, StoreError> {
        self.audit_entries_matching(&AuditFilter::default(), offset, limit)
            .await
    }
    /// The entries `filter` matches, newest first.
    async fn audit_entries_matching(
        &self,
        filter: &AuditFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<AuditEntry>, StoreError>;
    /// An entry about something that changed nothing stored (a refusal the data plane saw).
    async fn record_audit(&self, entry: &AuditEntry) -> Written;
    /// Walks the whole chain kept: how many entries it holds, or where it first breaks.
    async fn verify_audit_chain(&self) -> Result<Result<i64, ChainBreak>, StoreError>;
    /// Removes the entries older than `before` (kept `retention_days`), leaving a sealed
    /// checkpoint the kept chain verifies from; `None` when none is that old.
    async fn prune_audit(
        &self,
        before: Timestamp,
        retention_days: u32,
    ) -> Result<Option<Pruned>, StoreError>;
}

/// Entries read at a time while verifying.
const VERIFY_PAGE: i64 = 1000;

#[async_trait]
impl AuditLog for SqlStore {
    async fn audit_entries_matching(
        &self,
        filter: &AuditFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let (conditions, values) = filter.conditions();
        let counting = format!("SELECT COUNT(*) FROM audit_log{conditions}");
        let mut count = sqlx::query_scalar(&counting);
        for value in &values {
            count = count.bind(value);
        }
        let total: i64 = count.fetch_one(&self.reads).await?;
        let page = values.len();
        let sql = format!(
            "SELECT id, at, actor_user_id, action, target, details, client_address, user_agent, \
             correlation_id, tenant_id FROM audit_log{conditions} ORDER BY at DESC, id DESC LIMIT ${} OFFSET ${}",
            page + 1,
            page + 2
        );
        let mut select = sqlx::query(&sql);
        for value in &values {
            select = select.bind(value);
        }
        let rows = select
            .bind(to_i64(limit))
            .bind(to_i64(offset))
            .fetch_all(&self.reads)
            .await?;
        Ok(Page {
            items: rows.iter().map(entry_from_row).collect::<Result<_, _>>()?,
            total: to_u64(total),
        })
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Written {
        self.write(entry, async |_| Ok(())).await
    }

    async fn prune_audit(
        &self,
        before: Timestamp,
        retention_days: u32,
    ) -> Result<Option<Pruned>, StoreError> {
        audit_pruning::prune(self, before, retention_days).await
    }

    async fn verify_audit_chain(&self) -> Result<Result<i64, ChainBreak>, StoreError> {
        let outside: Option<String> =
            sqlx::query_scalar("SELECT id FROM audit_log WHERE seq IS NULL ORDER BY at LIMIT 1")
                .fetch_optional(&self.reads)
                .await?;
        if let Some(id) = outside {
            return Ok(Err(ChainBreak::Inserted { id }));
        }
        // The last place before the end: an entry and the end it moves commit together, so
        // every entry seen here is at or before the end read after it.
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&self.reads)
            .await?;
        let (end_seq, end_head, seal): (i64, String, String) =
            sqlx::query_as("SELECT seq, head, seal FROM audit_chain WHERE id = 1")
                .fetch_one(&self.reads)
                .await?;
        if !self.audit_chain.end_is_sealed(end_seq, &end_head, &seal) {
            return Ok(Err(ChainBreak::EndAltered { recorded: end_seq }));
        }
        if let Some(last) = last.filter(|last| *last > end_seq) {
            let id: String = sqlx::query_scalar("SELECT id FROM audit_log WHERE seq = $1")
                .bind(last)
                .fetch_one(&self.reads)
                .await?;
            return Ok(Err(ChainBreak::BeyondEnd { id }));
        }
        let (mut walk, mut after) = match self.checkpoint().await? {
            Ok(walk) => walk,
            Err(broken) => return Ok(Err(broken)),
        };
        loop {
            let rows = sqlx::query(
                "SELECT seq, id, at, actor_user_id, action, target, details, client_address, \
                 user_agent, correlation_id, tenant_id, hash \
                 FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(after)
            .bind(end_seq)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.reads)
            .await?;
            for row in &rows {
                let entry = chained_from_row(row)?;
                if let Err(broken) = walk.step(&entry) {
                    return Ok(Err(broken));
                }
                after = entry.columns.seq;
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < VERIFY_PAGE {
                return Ok(walk.finish(end_seq, &end_head));
            }
        }
    }
}

impl SqlStore {
    /// A walk from where the kept chain starts, and the place before it: the checkpoint of
    /// the last pruning, once its seal and the absence of entries at or before it are checked.
    async fn checkpoint(&self) -> Result<Result<(ChainWalk<'_>, i64), ChainBreak>, StoreError> {
        let (seq, hash, seal): (i64, String, String) = sqlx::query_as(
            "SELECT checkpoint_seq, checkpoint_hash, checkpoint_seal FROM audit_chain WHERE id = 1",
        )
        .fetch_one(&self.reads)
        .await?;
        if seq == 0 {
            return Ok(Ok((ChainWalk::new(&self.audit_chain), 0)));
        }
        if !self.audit_chain.checkpoint_is_sealed(seq, &hash, &seal) {
            return Ok(Err(ChainBreak::CheckpointAltered { recorded: seq }));
        }
        let pruned: Option<String> =
            sqlx::query_scalar("SELECT id FROM audit_log WHERE seq <= $1 ORDER BY seq LIMIT 1")
                .bind(seq)
                .fetch_optional(&self.reads)
                .await?;
        if let Some(id) = pruned {
            return Ok(Err(ChainBreak::Inserted { id }));
        }
        Ok(Ok((ChainWalk::after(&self.audit_chain, seq, hash), seq)))
    }
}

impl AuditFilter {
    /// The `WHERE` clause (empty without conditions) and its values, as `$1`, `$2`...; only
    /// the conditions given, so that each can use its index.
    fn conditions(&self) -> (String, Vec<String>) {
        let action = self.action.as_ref().map(|action| match action {
            ActionMatch::Exact(action) => ("action = ", action.clone()),
            ActionMatch::Prefix(start) => ("action LIKE ", format!("{}%", escape_like(start))),
        });
        let given = [
            self.actor_user_id
                .clone()
                .map(|id| ("actor_user_id = ", id)),
            action,
            self.target.clone().map(|target| ("target = ", target)),
            self.tenant_id
                .clone()
                .map(|tenant| ("tenant_id = ", tenant)),
            self.since.map(|at| ("at >= ", format_time(at))),
            self.until.map(|at| ("at < ", format_time(at))),
        ];
        let (mut clauses, mut values) = (Vec::new(), Vec::new());
        for (test, value) in given.into_iter().flatten() {
            values.push(value);
            let escape = if test.contains("LIKE") {
                " ESCAPE '\\'"
            } else {
                ""
            };
            clauses.push(format!("{test}${}{escape}", values.len()));
        }
        if clauses.is_empty() {
            (String::new(), values)
        } else {
            (format!(" WHERE {}", clauses.join(" AND ")), values)
        }
    }
}

/// Adds `entry` in the transaction of the write it records, as the chain's next entry.
pub(super) async fn insert(
    tx: &mut AnyConnection,
    chain: &AuditChainKey,
    entry: &AuditEntry,
) -> Written {
    let columns = ChainedColumns {
        seq: 0,
        id: entry.id.as_str().to_string(),
        at: format_time(entry.at),
        actor_user_id: entry
            .actor_user_id
            .as_ref()
            .map(|id| id.as_str().to_string()),
        action: entry.action.clone(),
        target: entry.target.clone(),
        details: entry.details.to_string(),
        client_address: entry.context.client_address.clone(),
        user_agent: entry.context.user_agent.clone(),
        correlation_id: entry.context.correlation_id.clone(),
        tenant_id: entry.tenant_id.clone(),
    };
    let (columns, hash) = extend_chain(tx, chain, columns).await?;
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_user_id, action, target, details, client_address, \
         user_agent, correlation_id, seq, hash, tenant_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&columns.id)
    .bind(&columns.at)
    .bind(&columns.actor_user_id)
    .bind(&columns.action)
    .bind(&columns.target)
    .bind(&columns.details)
    .bind(&columns.client_address)
    .bind(&columns.user_agent)
    .bind(&columns.correlation_id)
    .bind(columns.seq)
    .bind(&hash)
    .bind(&columns.tenant_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// Takes the chain's next place for `columns` (locking the chain's end until the transaction
/// ends) and records its hash as the new end.
async fn extend_chain(
    tx: &mut AnyConnection,
    chain: &AuditChainKey,
    mut columns: ChainedColumns,
) -> Result<(ChainedColumns, String), StoreError> {
    let (seq, previous): (i64, String) =
        sqlx::query_as("UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, head")
            .fetch_one(&mut *tx)
            .await?;
    columns.seq = seq;
    let hash = chain.link(&previous, &columns);
    sqlx::query("UPDATE audit_chain SET head = $1, seal = $2 WHERE id = 1")
        .bind(&hash)
        .bind(chain.seal_end(seq, &hash))
        .execute(&mut *tx)
        .await?;
    Ok((columns, hash))
}

/// Chains the entries written before the chain existed, oldest first, once: the first replica
/// to start after the migration does it, and later starts find the chain started.
pub(super) async fn start_chain(write: &mut Write) -> Written {
    let chain = write.audit_chain().clone();
    let starting =
        sqlx::query("UPDATE audit_chain SET started = 1, seal = $1 WHERE id = 1 AND started = 0")
            .bind(chain.seal_end(0, ""))
            .execute(write.rows())
            .await?;
    if starting.rows_affected() == 0 {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT CAST(0 AS BIGINT) AS seq, id, at, actor_user_id, action, target, details, \
         client_address, user_agent, correlation_id, tenant_id, '' AS hash \
         FROM audit_log WHERE seq IS NULL ORDER BY at, id",
    )
    .fetch_all(write.rows())
    .await?;
    for row in &rows {
        let columns = chained_from_row(row)?.columns;
        let (columns, hash) = extend_chain(write.rows(), &chain, columns).await?;
        sqlx::query("UPDATE audit_log SET seq = $1, hash = $2 WHERE id = $3")
            .bind(columns.seq)
            .bind(&hash)
            .bind(&columns.id)
            .execute(write.rows())
            .await?;
    }
    Ok(())
}

fn chained_from_row(row: &AnyRow) -> Result<ChainedEntry, StoreError> {
    Ok(ChainedEntry {
        columns: ChainedColumns {
            seq: row.try_get("seq")?,
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            actor_user_id: row.try_get("actor_user_id")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            details: row.try_get("details")?,
            client_address: row.try_get("client_address")?,
            user_agent: row.try_get("user_agent")?,
            correlation_id: row.try_get("correlation_id")?,
            tenant_id: row.try_get("tenant_id")?,
        },
        hash: row.try_get("hash")?,
    })
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: AuditId::from_string(row.try_get("id")?),
        at: required_time(row, "at")?,
        actor_user_id: row
            .try_get::<Option<String>, _>("actor_user_id")?
            .map(UserId::from_string),
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: from_json(row, "details")?,
        context: RequestContext {
            client_address: row.try_get("client_address")?,
            user_agent: row.try_get("user_agent")?,
            correlation_id: row.try_get("correlation_id")?,
        },
        tenant_id: row.try_get("tenant_id")?,
    })
}
