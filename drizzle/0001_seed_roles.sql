-- Built-in roles (protected from deletion; their names are fixed). Times are the migration's own.
INSERT INTO `roles` (`id`, `name`, `level`, `description`, `builtin`, `mfa_required`, `created_at`, `updated_at`) VALUES
  ('00000000-0000-7000-8000-000000000010', 'user', 10, 'Every account: manages its own profile, sessions, factors and files', 1, 0, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000050', 'moderator', 50, 'Reads users and their files', 1, 0, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000090', 'admin', 90, 'Administers users, roles below admin, sessions and the audit log', 1, 1, 1795868216878, 1795868216878),
  ('00000000-0000-7000-8000-000000000100', 'owner', 100, 'Everything', 1, 1, 1795868216878, 1795868216878);
--> statement-breakpoint
INSERT INTO `role_permissions` (`role_id`, `permission`) VALUES
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
