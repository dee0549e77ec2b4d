CREATE TABLE `client_assertion_jtis` (
	`client_id` text NOT NULL,
	`jti` text NOT NULL,
	`expires_at` integer NOT NULL,
	PRIMARY KEY(`client_id`, `jti`)
);
--> statement-breakpoint
CREATE INDEX `client_assertion_jtis_expires` ON `client_assertion_jtis` (`expires_at`);--> statement-breakpoint
CREATE TABLE `client_roles` (
	`client_id` text NOT NULL,
	`role_id` text NOT NULL,
	PRIMARY KEY(`client_id`, `role_id`),
	FOREIGN KEY (`client_id`) REFERENCES `oauth_clients`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`role_id`) REFERENCES `roles`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `client_roles_role` ON `client_roles` (`role_id`);--> statement-breakpoint
CREATE TABLE `oauth_clients` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`auth_method` text NOT NULL,
	`secret_hash` text,
	`previous_secret_hash` text,
	`previous_secret_expires_at` integer,
	`jwks` text,
	`permissions` text DEFAULT '[]' NOT NULL,
	`status` text DEFAULT 'active' NOT NULL,
	`created_by` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `oauth_clients_created` ON `oauth_clients` (`created_at`);--> statement-breakpoint
-- OAuth client administration for the built-in admin role (owner holds *:* already).
INSERT OR IGNORE INTO `role_permissions` (`role_id`, `permission`) VALUES
  ('00000000-0000-7000-8000-000000000090', 'clients:*');
