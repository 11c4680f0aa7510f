# One image for every carbonledger process (indexer, oracle, api, deploy, the anvil devnet); the command picks the job.
# Node 20 comes from the official node image (Debian bookworm ships Node 18; the npm tools want 20).
FROM node:20-bookworm-slim AS node

FROM python:3.11-slim-bookworm AS app
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY package.json package-lock.json .npmrc ./
# `npm install` honours package-lock.json; `npm ci` refuses it (npm 11 leaves other platforms' optional binaries out).
RUN npm install --no-audit --no-fund --loglevel=error --ignore-scripts
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV CARBONLEDGER_CONFIG=/app/carbonledger.toml
ENTRYPOINT ["carbonledger"]
