# The whocould binary in a small image: docker build -t whocould .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /whocould ./cmd/whocould

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /whocould /usr/local/bin/whocould
COPY deploy/ /etc/whocould/
USER nonroot
VOLUME /var/lib/whocould
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/whocould"]
CMD ["serve", "--config", "/etc/whocould/whocould.yaml", "--data-dir", "/var/lib/whocould", "--listen", "0.0.0.0:8080"]
