-- Create index "token_conversation_id" to table: "tokens"
CREATE INDEX "token_conversation_id" ON "tokens" ("conversation_id");
