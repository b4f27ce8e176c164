-- Modify "conversations" table
ALTER TABLE "conversations" ADD COLUMN "wrap_up" jsonb NULL;
-- Modify "settings" table
ALTER TABLE "settings" ADD COLUMN "wrap_up_codes" jsonb NOT NULL DEFAULT '[]', ADD COLUMN "wrap_up_required" boolean NOT NULL DEFAULT false;
