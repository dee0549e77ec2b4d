DROP INDEX `refresh_tokens_replaced_by`;--> statement-breakpoint
DROP INDEX `refresh_tokens_used`;--> statement-breakpoint
CREATE INDEX `refresh_tokens_successor_kept` ON `refresh_tokens` (`used_at`) WHERE "refresh_tokens"."successor_enc" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `refresh_tokens_used` ON `refresh_tokens` (`used_at`) WHERE "refresh_tokens"."used_at" IS NOT NULL;