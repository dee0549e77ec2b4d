DROP INDEX "security_events_actor";--> statement-breakpoint
DROP INDEX "security_events_target";--> statement-breakpoint
CREATE INDEX "security_events_actor" ON "security_events" USING btree ("actor_id","id") WHERE "security_events"."actor_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "security_events_target" ON "security_events" USING btree ("target_id","id") WHERE "security_events"."target_id" IS NOT NULL AND ("security_events"."actor_id" IS NULL OR "security_events"."target_id" <> "security_events"."actor_id");