# Build the single binary, then ship it alone on a slim base as a non-root user.
FROM oven/bun:1.4.4 AS build
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile
COPY tsconfig.json bunfig.toml ./
COPY src ./src
COPY drizzle ./drizzle
RUN bun run build

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin bulwark \
 && mkdir -p /data && chown bulwark /data
COPY --from=build /src/dist/bulwark /usr/local/bin/bulwark
USER 10001
ENV BULWARK_DATA_DIR=/data BULWARK_HOST=0.0.0.0 BULWARK_PORT=3000
VOLUME ["/data"]
WORKDIR /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/bulwark", "--version"]
ENTRYPOINT ["/usr/local/bin/bulwark"]
CMD ["serve"]
