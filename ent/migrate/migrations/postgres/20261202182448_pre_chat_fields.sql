-- Modify "settings" table
ALTER TABLE "settings" ADD COLUMN "pre_chat_fields" jsonb NOT NULL DEFAULT '[]';
