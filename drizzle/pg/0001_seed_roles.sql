-- PostgreSQL equivalent of drizzle/0001_seed_roles.sql and drizzle/0002_service_role.sql: the same rows, ids and times.
INSERT INTO "roles" ("id", "name", "level", "description", "builtin", "mfa_required", "created_at", "updated_at") VALUES
  ('00000000-0000-7000-8000-000000000010', 'user', 10, 'Every account: manages its own profile, sessions, factors and files', true, false, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000050', 'moderator', 50, 'Reads users and their files', true, false, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000090', 'admin', 90, 'Administers users, roles below admin, sessions and the audit log', true, true, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000100', 'owner', 100, 'Everything', true, true, 1795868216878, 1795868216878);
--> statement-breakpoint
INSERT INTO "role_permissions" ("role_id", "permission") VALUES
  ('00000000-0000-7000-8000-000000000010', 'files:read:own'),
  ('00000000-0000-7000-8000-000000000010', 'files:write:own'),
  ('00000000-0000-7000-8000-000000000010', 'files:delete:own'),
  ('00000000-0000-7000-8000-000000000050', 'users:read'),
  ('00000000-0000-7000-8000-000000000050', 'files:read:any'),
  ('00000000-0000-7000-8000-000000000090', 'users:*'),
  ('00000000-0000-7000-8000-000000000090', 'roles:*'),
  ('00000000-0000-7000-8000-000000000090', 'sessions:revoke'),
  ('00000000-0000-7000-8000-000000000090', 'audit:read'),
  ('00000000-0000-7000-8000-000000000090', 'authz:check'),
  ('00000000-0000-7000-8000-000000000090', 'files:*:any'),
  ('00000000-0000-7000-8000-000000000100', '*:*'),
  ('00000000-0000-7000-8000-000000000100', '*:*:*');
--> statement-breakpoint
INSERT INTO "roles" ("id", "name", "level", "description", "builtin", "mfa_required", "created_at", "updated_at") VALUES
  ('00000000-0000-7000-8000-000000000020', 'service', 20, 'Services that ask Bulwark whether a user may do something', false, false, 1795869546059, 1795869546059);
--> statement-breakpoint
INSERT INTO "role_permissions" ("role_id", "permission") VALUES
  ('00000000-0000-7000-8000-000000000020', 'authz:check');
