FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY connex connex
COPY schema schema
COPY rest_compat rest_compat
COPY workers workers
RUN pip install --no-cache-dir .
RUN useradd --system connex
USER connex
EXPOSE 8000
CMD ["connex", "serve", "--host", "0.0.0.0"]
