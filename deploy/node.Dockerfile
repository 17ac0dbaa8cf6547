# A node: Flower SuperNode running the mmbind ClientApp (mmbind-client).
FROM flwr/supernode:1.42.0

USER root
WORKDIR /opt/mmbind
COPY pyproject.toml README.md ./
COPY mmbind ./mmbind
COPY binding ./binding
COPY client ./client
COPY server ./server
COPY lab ./lab
COPY protos ./protos
# torch is pinned to 2.13.0; point TORCH_INDEX_URL at a CPU-only wheel index for a small image.
ARG TORCH_INDEX_URL=""
RUN python -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0 \
 && python -m pip install --no-cache-dir .
USER app
ENV FLWR_TELEMETRY_ENABLED=0
ENTRYPOINT ["mmbind-client"]
