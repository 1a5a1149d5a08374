# The flashsale service. Build: docker build -t flashsale .
# Node 24, the maintained LTS (Node 20 reached end of life in April 2026);
# .ci/run runs the whole test suite on this same minor version.

# Build: all dependencies, compile, copy the Lua scripts and SQL migrations.
FROM node:24.22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node scripts/prepare.mjs

# Run: the compiled service and production dependencies only (no TypeScript
# sources, tests, tools or dev dependencies).
FROM node:24.22-bookworm-slim
# tini as PID 1: the kernel ignores SIGTERM sent to a PID 1 without a handler,
# which Node has only once start-up (migrations) is over; tini forwards it at
# any moment, so docker stop drains instead of waiting and killing.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production PORT=8080
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
EXPOSE 8080
USER node
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
  CMD node -e "fetch('http://127.0.0.1:8080/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/server.js"]
