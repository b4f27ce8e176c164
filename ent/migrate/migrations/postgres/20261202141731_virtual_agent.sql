-- Modify "cases" table
ALTER TABLE "cases" ADD COLUMN "state" character varying NOT NULL DEFAULT 'new', ADD COLUMN "assigned_agent_id" uuid NULL, ADD COLUMN "updated_at" timestamptz NOT NULL DEFAULT now();
-- Create index "servicecase_assigned_agent_id_state" to table: "cases"
CREATE INDEX "servicecase_assigned_agent_id_state" ON "cases" ("assigned_agent_id", "state");
-- Create index "servicecase_consumer_id" to table: "cases"
CREATE INDEX "servicecase_consumer_id" ON "cases" ("consumer_id");
-- Create index "servicecase_conversation_id" to table: "cases"
CREATE INDEX "servicecase_conversation_id" ON "cases" ("conversation_id");
-- Modify "interactions" table
ALTER TABLE "interactions" ADD COLUMN "slots" jsonb NOT NULL DEFAULT '{}';
-- Modify "settings" table
ALTER TABLE "settings" ADD COLUMN "bot_channels" jsonb NOT NULL DEFAULT '[]', ADD COLUMN "bot_config" text NOT NULL DEFAULT '', ADD COLUMN "bot_config_version" bigint NOT NULL DEFAULT 0;
-- Modify "sites" table
ALTER TABLE "sites" ADD COLUMN "bot" character varying NOT NULL DEFAULT 'default';
-- Create "articles" table
CREATE TABLE "articles" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "external_id" character varying NOT NULL, "title" character varying NOT NULL, "body" text NOT NULL, "tags" jsonb NOT NULL, "audience" character varying NOT NULL DEFAULT 'public', "locale" character varying NOT NULL DEFAULT 'en', "published" boolean NOT NULL DEFAULT false, "content_hash" character varying NOT NULL, "updated_at" timestamptz NOT NULL, "search_doc" tsvector NULL, PRIMARY KEY ("id"));
-- Create index "article_published_locale" to table: "articles"
CREATE INDEX "article_published_locale" ON "articles" ("published", "locale");
-- Create index "article_search_doc" to table: "articles"
CREATE INDEX "article_search_doc" ON "articles" USING gin ("search_doc");
-- Create index "articles_external_id_key" to table: "articles"
CREATE UNIQUE INDEX "articles_external_id_key" ON "articles" ("external_id");
-- Create "bot_sessions" table
CREATE TABLE "bot_sessions" ("id" uuid NOT NULL, "created_at" timestamptz NOT NULL, "state" bytea NULL, "pending_seq" bigint NOT NULL DEFAULT 0, "answered_seq" bigint NOT NULL DEFAULT 0, "turn_pending" boolean NOT NULL DEFAULT false, "lease_until" timestamptz NULL, "lease_owner" character varying NOT NULL DEFAULT '', "summary" bytea NULL, "updated_at" timestamptz NOT NULL, "conversation_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "bot_sessions_conversations_bot_session" FOREIGN KEY ("conversation_id") REFERENCES "conversations" ("id") ON UPDATE NO ACTION ON DELETE CASCADE);
-- Create index "bot_sessions_conversation_id_key" to table: "bot_sessions"
CREATE UNIQUE INDEX "bot_sessions_conversation_id_key" ON "bot_sessions" ("conversation_id");
-- Create index "botsession_turn_pending_lease_until" to table: "bot_sessions"
CREATE INDEX "botsession_turn_pending_lease_until" ON "bot_sessions" ("turn_pending", "lease_until");
