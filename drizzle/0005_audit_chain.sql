ALTER TABLE `security_events` ADD `chain_id` text;--> statement-breakpoint
ALTER TABLE `security_events` ADD `seq` integer;--> statement-breakpoint
ALTER TABLE `security_events` ADD `prev_hash` text;--> statement-breakpoint
ALTER TABLE `security_events` ADD `hash` text;--> statement-breakpoint
CREATE UNIQUE INDEX `security_events_chain` ON `security_events` (`chain_id`,`seq`);--> statement-breakpoint
CREATE INDEX `security_events_type_created` ON `security_events` (`type`,`created_at`);