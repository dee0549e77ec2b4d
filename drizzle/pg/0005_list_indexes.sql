DROP INDEX "api_keys_user";--> statement-breakpoint
DROP INDEX "oauth_clients_created";--> statement-breakpoint
CREATE INDEX "api_keys_user" ON "api_keys" USING btree ("user_id","id");--> statement-breakpoint
CREATE INDEX "oauth_clients_created" ON "oauth_clients" USING btree ("created_at","id");