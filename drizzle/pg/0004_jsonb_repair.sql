-- Rows written before the jsonb column type of src/db/pg/schema.ts was fixed hold each JSON object as a
-- jsonb string (double-encoded). Turn them back into the JSON values they encode.
UPDATE "security_events" SET "details" = ("details" #>> '{}')::jsonb WHERE jsonb_typeof("details") = 'string';--> statement-breakpoint
UPDATE "passkeys" SET "transports" = ("transports" #>> '{}')::jsonb WHERE jsonb_typeof("transports") = 'string';--> statement-breakpoint
UPDATE "challenges" SET "data" = ("data" #>> '{}')::jsonb WHERE jsonb_typeof("data") = 'string';
