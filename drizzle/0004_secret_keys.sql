CREATE TABLE `secret_keys` (
	`purpose` text PRIMARY KEY NOT NULL,
	`key_enc` text NOT NULL,
	`created_at` integer NOT NULL
);
