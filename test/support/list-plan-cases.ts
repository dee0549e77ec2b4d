/**
 * Every list query that pages with a LIMIT, built by the services' own exported builders, with the index each
 * must be driven by (test/db/list-plans.test.ts checks them on SQLite with EXPLAIN QUERY PLAN and on
 * PostgreSQL with EXPLAIN (FORMAT JSON); test/support/pg-list-plans.ts is the PostgreSQL side).
 * `order`: 'index' — the index gives the list's order, so the plan has no sort at all (no TEMP B-TREE on
 * SQLite, no Sort or Incremental Sort node on PostgreSQL) and a page costs its LIMIT, not every matching row;
 * 'bounded' — a final sort only of rows that LIMITed, index-ordered branches produced; 'matches' — the
 * matches are found by index and then sorted (a prefix search has no order of its own).
 *
 * The data (seedSql) is sized so PostgreSQL's cost-based planner takes the plans a real deployment would:
 * 20,000 users, 50,000 audit events, 20,000 sessions, API keys and files, 5,000 clients, 50,000 webhook
 * deliveries, with one busy key per per-key list (a user with 1,000 of the sessions, API keys and files and 2,000
 * audit events, an endpoint with 5,000 deliveries: sorting every match would cost more than an ordered index
 * walk) and a rare one (a type of 100 events, an endpoint of 100 deliveries: only its index finds them
 * without a long walk). `genericPlanWalks` names the cases whose generic PostgreSQL plan is known to walk.
 * The builders are functions, called after the engine is chosen (src/db/tables.ts).
 */
import type { Db } from '../../src/db/client'
import { fullPageQuery, listQuery, plainIdsQuery } from '../../src/modules/users/admin-service'
import { auditListQuery } from '../../src/modules/audit/service'
import { apiKeysListQuery } from '../../src/modules/apikeys/store'
import { clientsListQuery } from '../../src/modules/clients/store'
import { sessionsListQuery } from '../../src/modules/sessions/service'
import { deliveriesListQuery } from '../../src/modules/webhooks/service'
import { filesListQuery } from '../../src/modules/files/service'

type Engine = 'sqlite' | 'postgres'

export interface PlanCase {
  name: string
  /** The table the list reads: never scanned whole. */
  table: string
  build: (db: Db) => { toSQL(): { sql: string; params: unknown[] } }
  /** Indexes the plan must use, per engine: every entry, an entry `a|b` being either. */
  uses: Record<Engine, string[]>
  order: 'index' | 'bounded' | 'matches'
  /** Why PostgreSQL's generic plan (a prepared statement after five runs) is known not to meet the case. */
  genericPlanWalks?: string
}

const pad = (i: number) => String(i).padStart(8, '0')
const U = (i: number) => `u${pad(i)}`
const SMALL_ROLE = 'r-small'
/** The user with 1,000 sessions, API keys and files and 2,000 audit events (actor or target). */
const HEAVY = U(7)
/** A user with about ten of each. */
const QUIET = U(42)

/** PostgreSQL's generic plan estimates `column = $1` from the column's average frequency, so a rare value looks common. */
const GENERIC_RARE = "the generic plan cannot know the value is rare and walks the primary key in list order, filtering every row (PostgreSQL picks it after five runs of a prepared statement when its estimate is no worse)"

export const PLAN_CASES: PlanCase[] = [
  // Users (GET /v1/users): each filter combination of listQuery.
  { name: 'users, no filter, first page', table: 'users', build: (db) => listQuery(db, {}, '', 21), uses: { sqlite: ['sqlite_autoindex_users_1'], postgres: ['users_pkey'] }, order: 'index' },
  { name: 'users, no filter, later page', table: 'users', build: (db) => listQuery(db, {}, U(15_000), 21), uses: { sqlite: ['sqlite_autoindex_users_1'], postgres: ['users_pkey'] }, order: 'index' },
  // The unfiltered page as the service reads it: the ids and versions, then (when its view cache lacks any) the columns.
  { name: 'users, no filter, page ids', table: 'users', build: (db) => plainIdsQuery(db, '', 21), uses: { sqlite: ['sqlite_autoindex_users_1'], postgres: ['users_pkey'] }, order: 'index' },
  { name: 'users, no filter, later page ids', table: 'users', build: (db) => plainIdsQuery(db, U(15_000), 21), uses: { sqlite: ['sqlite_autoindex_users_1'], postgres: ['users_pkey'] }, order: 'index' },
  { name: 'users, no filter, page with columns', table: 'users', build: (db) => fullPageQuery(db, U(15_000), 21), uses: { sqlite: ['sqlite_autoindex_users_1'], postgres: ['users_pkey'] }, order: 'index' },
  { name: 'users, status=disabled', table: 'users', build: (db) => listQuery(db, { status: 'disabled' }, U(5_000), 21), uses: { sqlite: ['users_status_id'], postgres: ['users_status_id'] }, order: 'index', genericPlanWalks: GENERIC_RARE },
  { name: 'users, role', table: 'users', build: (db) => listQuery(db, { roleId: SMALL_ROLE }, '', 21), uses: { sqlite: ['user_roles_role'], postgres: ['user_roles_role', 'users_pkey'] }, order: 'index' },
  { name: 'users, role and status', table: 'users', build: (db) => listQuery(db, { roleId: SMALL_ROLE, status: 'active' }, U(100), 21), uses: { sqlite: ['user_roles_role'], postgres: ['user_roles_role', 'users_pkey'] }, order: 'index' },
  // q is a prefix of the email or of lower(name): the two prefix indexes find the matches, which are then put in id order.
  ...(['', 'status', 'role'] as const).map(
    (extra): PlanCase => ({
      name: `users, q${extra ? ` and ${extra}` : ''}`,
      table: 'users',
      build: (db) => listQuery(db, { q: 'user0001234', ...(extra === 'status' ? { status: 'active' as const } : extra === 'role' ? { roleId: SMALL_ROLE } : {}) }, '', 21),
      uses: { sqlite: ['users_email_unique', 'users_name_lower'], postgres: ['users_email_unique', 'users_name_lower'] },
      order: 'matches',
      genericPlanWalks: 'the generic plan estimates the prefix ranges at a share of the table and walks users_pkey in id order, filtering every row until 21 match (the whole table for a prefix that matches little)',
    }),
  ),
  // Audit events (GET /v1/audit/events), newest first.
  { name: 'audit, no filter', table: 'security_events', build: (db) => auditListQuery(db, { limit: 51 }), uses: { sqlite: [], postgres: ['security_events_pkey'] }, order: 'index' },
  { name: 'audit, later page', table: 'security_events', build: (db) => auditListQuery(db, { beforeId: 25_000, limit: 51 }), uses: { sqlite: [], postgres: ['security_events_pkey'] }, order: 'index' },
  { name: 'audit, common type', table: 'security_events', build: (db) => auditListQuery(db, { type: 't7', limit: 51 }), uses: { sqlite: ['security_events_type'], postgres: ['security_events_type|security_events_pkey'] }, order: 'index' },
  { name: 'audit, rare type', table: 'security_events', build: (db) => auditListQuery(db, { type: 'rare', limit: 51 }), uses: { sqlite: ['security_events_type'], postgres: ['security_events_type'] }, order: 'index', genericPlanWalks: GENERIC_RARE },
  { name: 'audit, rare type, later page', table: 'security_events', build: (db) => auditListQuery(db, { type: 'rare', beforeId: 25_000, limit: 51 }), uses: { sqlite: ['security_events_type'], postgres: ['security_events_type'] }, order: 'matches', genericPlanWalks: GENERIC_RARE },
  // Events where the user is the actor or the target: each side read newest first from its own index and cut at
  // the page size; only those two short lists are merged and sorted.
  // With few matches on a side (a quiet user, a user and a type), sorting them is the cheaper plan and allowed.
  ...([
    ['busy user', HEAVY, {}, 'bounded'],
    ['busy user, later page', HEAVY, { beforeId: 25_000 }, 'bounded'],
    ['busy user and a type', HEAVY, { type: 't3' }, 'matches'],
    ['quiet user', QUIET, {}, 'matches'],
  ] as const).map(
    ([label, userId, extra, order]): PlanCase => ({
      name: `audit, ${label} (actor or target)`,
      table: 'security_events',
      build: (db) => auditListQuery(db, { userId, limit: 51, ...extra }),
      // A busy user's side may be read by walking the primary key newest first (PostgreSQL's choice on ids in insertion order).
      uses: { sqlite: ['security_events_actor', 'security_events_target'], postgres: userId === HEAVY ? ['security_events_actor|security_events_pkey', 'security_events_target|security_events_pkey'] : ['security_events_actor', 'security_events_target'] },
      order,
    }),
  ),
  { name: 'audit, time window', table: 'security_events', build: (db) => auditListQuery(db, { since: 10_000_000, until: 10_500_000, limit: 51 }), uses: { sqlite: ['security_events_created'], postgres: ['security_events_created'] }, order: 'matches' },
  // A user's sessions (GET /v1/me/sessions), newest first.
  { name: 'sessions of a user', table: 'sessions', build: (db) => sessionsListQuery(db, HEAVY), uses: { sqlite: ['sessions_user'], postgres: ['sessions_user'] }, order: 'index' },
  // API keys (GET /v1/me/api-keys, GET /v1/api-keys), newest first by id.
  { name: 'api keys of a busy user', table: 'api_keys', build: (db) => apiKeysListQuery(db, HEAVY, 51), uses: { sqlite: ['api_keys_user'], postgres: ['api_keys_user|api_keys_pkey'] }, order: 'index' },
  { name: 'api keys of a busy user, later page', table: 'api_keys', build: (db) => apiKeysListQuery(db, HEAVY, 51, `k${pad(10_000)}`), uses: { sqlite: ['api_keys_user'], postgres: ['api_keys_user|api_keys_pkey'] }, order: 'index' },
  { name: 'api keys of a quiet user', table: 'api_keys', build: (db) => apiKeysListQuery(db, QUIET, 51), uses: { sqlite: ['api_keys_user'], postgres: ['api_keys_user'] }, order: 'matches' },
  { name: 'api keys, everyone', table: 'api_keys', build: (db) => apiKeysListQuery(db, undefined, 51, `k${pad(10_000)}`), uses: { sqlite: ['sqlite_autoindex_api_keys_1'], postgres: ['api_keys_pkey'] }, order: 'index' },
  // OAuth clients (GET /v1/clients), newest first by (createdAt, id).
  { name: 'clients, first page', table: 'oauth_clients', build: (db) => clientsListQuery(db, 51), uses: { sqlite: ['oauth_clients_created'], postgres: ['oauth_clients_created'] }, order: 'index' },
  { name: 'clients, later page', table: 'oauth_clients', build: (db) => clientsListQuery(db, 51, { createdAt: 1000, id: `c${pad(3000)}` }), uses: { sqlite: ['oauth_clients_created'], postgres: ['oauth_clients_created'] }, order: 'index' },
  // An endpoint's delivery log (GET /v1/webhooks/{id}/deliveries), newest first by id.
  { name: 'webhook deliveries, busy endpoint', table: 'webhook_deliveries', build: (db) => deliveriesListQuery(db, 'e3', { limit: 51 }), uses: { sqlite: ['webhook_deliveries_endpoint'], postgres: ['webhook_deliveries_endpoint|webhook_deliveries_pkey'] }, order: 'index' },
  { name: 'webhook deliveries, quiet endpoint', table: 'webhook_deliveries', build: (db) => deliveriesListQuery(db, 'e-rare', { limit: 51 }), uses: { sqlite: ['webhook_deliveries_endpoint'], postgres: ['webhook_deliveries_endpoint'] }, order: 'index', genericPlanWalks: GENERIC_RARE },
  { name: 'webhook deliveries, quiet endpoint, later page', table: 'webhook_deliveries', build: (db) => deliveriesListQuery(db, 'e-rare', { beforeId: `d${pad(20_000)}`, limit: 51 }), uses: { sqlite: ['webhook_deliveries_endpoint'], postgres: ['webhook_deliveries_endpoint'] }, order: 'matches', genericPlanWalks: GENERIC_RARE },
  // Files (GET /v1/files): one owner's, or everyone's with files:read:any.
  { name: 'files of a busy owner', table: 'files', build: (db) => filesListQuery(db, HEAVY, undefined, 51), uses: { sqlite: ['files_owner'], postgres: ['files_owner|files_pkey'] }, order: 'index' },
  { name: 'files of a quiet owner', table: 'files', build: (db) => filesListQuery(db, QUIET, undefined, 51), uses: { sqlite: ['files_owner'], postgres: ['files_owner'] }, order: 'matches' },
  { name: 'files, everyone', table: 'files', build: (db) => filesListQuery(db, undefined, `f${pad(10_000)}`, 51), uses: { sqlite: ['sqlite_autoindex_files_1'], postgres: ['files_pkey'] }, order: 'index' },
]

/**
 * Statements that fill a migrated database with the rows above (INSERT … SELECT over a generated series of
 * integers; the same rows on both engines). Times are small integers: only their order matters here.
 */
export function seedSql(engine: Engine): string[] {
  const series = (n: number) => (engine === 'postgres' ? `generate_series(0, ${n - 1}) AS s(i)` : `(WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < ${n - 1}) SELECT i FROM g) AS s`)
  const p = (e: string) => (engine === 'postgres' ? `lpad((${e})::text, 8, '0')` : `printf('%08d', ${e})`)
  const f = engine === 'postgres' ? 'false' : '0'
  const userRole = '00000000-0000-7000-8000-000000000010'
  return [
    `INSERT INTO users (id, email, name, password_hash, status, created_at, updated_at)
       SELECT 'u' || ${p('i')}, 'user' || ${p('i')} || '@x.test', 'User ' || i, NULL, CASE WHEN i % 10 = 0 THEN 'disabled' ELSE 'active' END, i, i FROM ${series(20_000)}`,
    `INSERT INTO roles (id, name, level, description, builtin, mfa_required, created_at, updated_at) VALUES ('${SMALL_ROLE}', 'small', 30, '', ${f}, ${f}, 0, 0)`,
    `INSERT INTO user_roles (user_id, role_id, granted_by, created_at) SELECT 'u' || ${p('i')}, '${userRole}', NULL, i FROM ${series(20_000)}`,
    `INSERT INTO user_roles (user_id, role_id, granted_by, created_at) SELECT 'u' || ${p('i * 100')}, '${SMALL_ROLE}', NULL, i FROM ${series(200)}`,
    `INSERT INTO security_events (type, outcome, actor_id, target_id, created_at)
       SELECT CASE WHEN i % 500 = 1 THEN 'rare' ELSE 't' || (i % 20) END, 'info', 'u' || ${p('CASE WHEN i % 50 = 3 THEN 7 ELSE i % 2000 END')}, 'u' || ${p('CASE WHEN i % 50 = 11 THEN 7 ELSE (i * 7) % 20000 END')}, i * 1000 FROM ${series(50_000)}`,
    `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, ip, user_agent, transport, amr, auth_time, mfa_pending, revoked_at, revoked_reason)
       SELECT 's' || ${p('i')}, 'u' || ${p('CASE WHEN i % 20 = 3 THEN 7 ELSE i % 2000 END')}, i, i, i + 1000000, NULL, NULL, 'bearer', 'pwd', i, ${f}, CASE WHEN i % 3 = 0 THEN i + 1 END, NULL FROM ${series(20_000)}`,
    `INSERT INTO api_keys (id, user_id, name, key_hash, hint, permissions, amr, created_at)
       SELECT 'k' || ${p('i')}, 'u' || ${p('CASE WHEN i % 20 = 3 THEN 7 ELSE i % 2000 END')}, 'key', 'h' || i, 'x', NULL, 'pwd', i FROM ${series(20_000)}`,
    `INSERT INTO oauth_clients (id, name, auth_method, permissions, status, created_at, updated_at)
       SELECT 'c' || ${p('i')}, 'client', 'client_secret_basic', '[]', 'active', i / 3, i / 3 FROM ${series(5_000)}`,
    `INSERT INTO webhook_endpoints (id, url, events, secret_enc, created_at, updated_at)
       SELECT 'e' || i, 'https://hooks.example/' || i, '["*"]', 'x', i, i FROM ${series(10)}`,
    `INSERT INTO webhook_endpoints (id, url, events, secret_enc, created_at, updated_at) VALUES ('e-rare', 'https://hooks.example/rare', '["*"]', 'x', 0, 0)`,
    `INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, status, next_attempt_at, created_at)
       SELECT 'd' || ${p('i')}, CASE WHEN i % 500 = 2 THEN 'e-rare' ELSE 'e' || (i % 10) END, 'user.created', '{}', CASE WHEN i % 50 = 0 THEN 'pending' ELSE 'succeeded' END, i, i FROM ${series(50_000)}`,
    `INSERT INTO files (id, owner_id, name, type, size, sha256, purpose, created_at)
       SELECT 'f' || ${p('i')}, 'u' || ${p('CASE WHEN i % 20 = 3 THEN 7 ELSE i % 2000 END')}, 'f.txt', 'text/plain', 1, 'x', 'file', i FROM ${series(20_000)}`,
    'ANALYZE',
  ]
}
