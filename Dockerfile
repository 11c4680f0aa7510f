# One image for every carbonledger process (indexer, oracle, api, deploy); the command picks the job.
FROM python:3.11-slim AS app
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm postgresql-client && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=optional || npm ci --no-audit --no-fund
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV CARBONLEDGER_CONFIG=/app/carbonledger.toml
ENTRYPOINT ["carbonledger"]
