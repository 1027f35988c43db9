FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md alembic.ini ./
COPY core core
COPY ml ml
COPY workers workers
COPY web web
COPY cli cli
COPY migrations migrations
RUN pip install --no-cache-dir '.[ml]'
RUN useradd --create-home spamsift && mkdir /home/spamsift/metrics \
    && chown spamsift /home/spamsift/metrics
USER spamsift
ENV SPAMSIFT_VAR_DIR=/home/spamsift/var
# No secret key in the image: give SPAMSIFT_SECRET_KEY (32+ random bytes) at run time; the
# web app refuses to serve without one.
EXPOSE 8000
CMD ["spamsift", "web", "--host", "0.0.0.0", "--port", "8000"]
