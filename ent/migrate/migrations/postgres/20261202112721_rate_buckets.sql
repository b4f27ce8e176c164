-- Create "rate_buckets" table
CREATE TABLE "rate_buckets" ("id" character varying NOT NULL, "tat" bigint NOT NULL, PRIMARY KEY ("id"));
-- Create index "ratebucket_tat" to table: "rate_buckets"
CREATE INDEX "ratebucket_tat" ON "rate_buckets" ("tat");
