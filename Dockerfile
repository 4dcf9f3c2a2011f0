# morphnas server image (CPU). Build:  docker build -t morphnas .
# Run:    docker run -p 50051:50051 -v morphnas-data:/data morphnas
# The database defaults to a SQLite file in /data; pass --db postgresql+psycopg://... to scale out.
# For GPU training workers, start from an NVIDIA CUDA base image and drop the CPU index below.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/morphnas \
 && /opt/morphnas/bin/pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY morphnas ./morphnas
RUN /opt/morphnas/bin/pip install ".[server]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 morphnas && mkdir /data && chown morphnas /data
COPY --from=build /opt/morphnas /opt/morphnas
ENV PATH=/opt/morphnas/bin:$PATH PYTHONUNBUFFERED=1
USER morphnas
WORKDIR /data
EXPOSE 50051
# SIGTERM (docker stop) drains in-flight calls and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c=grpc.insecure_channel('127.0.0.1:50051'); sys.exit(0 if g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=3).status == 1 else 1)"
ENTRYPOINT ["morphnas", "serve", "--host", "0.0.0.0", "--port", "50051"]
CMD ["--db", "sqlite:////data/morphnas.db"]
