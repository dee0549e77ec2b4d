CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"name" text NOT NULL,
	"key_hash" text NOT NULL,
	"hint" text NOT NULL,
	"permissions" text,
	"amr" text DEFAULT 'pwd' NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint,
	"last_used_at" bigint,
	"revoked_at" bigint
);
--> statement-breakpoint
CREATE TABLE "app_permissions" (
	"name" text PRIMARY KEY NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_by" text,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "client_assertion_jtis" (
	"client_id" text NOT NULL,
	"jti" text NOT NULL,
	"expires_at" bigint NOT NULL,
	CONSTRAINT "client_assertion_jtis_client_id_jti_pk" PRIMARY KEY("client_id","jti")
);
--> statement-breakpoint
CREATE TABLE "client_roles" (
	"client_id" text NOT NULL,
	"role_id" text NOT NULL,
	CONSTRAINT "client_roles_client_id_role_id_pk" PRIMARY KEY("client_id","role_id")
);
--> statement-breakpoint
CREATE TABLE "oauth_clients" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"auth_method" text NOT NULL,
	"secret_hash" text,
	"previous_secret_hash" text,
	"previous_secret_expires_at" bigint,
	"jwks" text,
	"permissions" text DEFAULT '[]' NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"created_by" text,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "client_roles" ADD CONSTRAINT "client_roles_client_id_oauth_clients_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."oauth_clients"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "client_roles" ADD CONSTRAINT "client_roles_role_id_roles_id_fk" FOREIGN KEY ("role_id") REFERENCES "public"."roles"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_hash" ON "api_keys" USING btree ("key_hash");--> statement-breakpoint
CREATE INDEX "api_keys_user" ON "api_keys" USING btree ("user_id","created_at");--> statement-breakpoint
CREATE INDEX "client_assertion_jtis_expires" ON "client_assertion_jtis" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "client_roles_role" ON "client_roles" USING btree ("role_id");--> statement-breakpoint
CREATE INDEX "oauth_clients_created" ON "oauth_clients" USING btree ("created_at");--> statement-breakpoint
-- PostgreSQL equivalent of the data parts of drizzle/0008_oauth_clients.sql and 0009_app_permissions_api_keys.sql.
INSERT INTO "role_permissions" ("role_id", "permission") VALUES
  ('00000000-0000-7000-8000-000000000090', 'clients:*'),
  ('00000000-0000-7000-8000-000000000090', 'apikeys:*')
ON CONFLICT DO NOTHING;
