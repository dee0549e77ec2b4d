-- A non-built-in role for machine callers of the policy decision API (POST /v1/authz/check).
INSERT INTO `roles` (`id`, `name`, `level`, `description`, `builtin`, `mfa_required`, `created_at`, `updated_at`) VALUES
  ('00000000-0000-7000-8000-000000000020', 'service', 20, 'Services that ask Bulwark whether a user may do something', 0, 0, 1795869546059, 1795869546059);
--> statement-breakpoint
INSERT INTO `role_permissions` (`role_id`, `permission`) VALUES
  ('00000000-0000-7000-8000-000000000020', 'authz:check');
