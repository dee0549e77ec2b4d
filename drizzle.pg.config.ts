import { defineConfig } from 'drizzle-kit'

/** PostgreSQL migrations (drizzle/pg/), generated from src/db/pg/schema.ts by `bun run db:generate:pg`. */
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/pg/schema.ts',
  out: './drizzle/pg',
})
