{{/* Chart name. */}}
{{- define "agentidp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name prefix: <release>-agentidp unless the release name already contains it. */}}
{{- define "agentidp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one service's resources: <fullname>-<service>. */}}
{{- define "agentidp.svcname" -}}
{{- printf "%s-%s" (include "agentidp.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentidp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every resource of the release. */}}
{{- define "agentidp.labels" -}}
helm.sh/chart: {{ include "agentidp.chart" . }}
app.kubernetes.io/part-of: agentidp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the whole release (all services). */}}
{{- define "agentidp.releaseSelector" -}}
app.kubernetes.io/part-of: agentidp
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one service. Context: dict root name. */}}
{{- define "agentidp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentidp.name" .root }}-{{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* All labels of one service. Context: dict root name. */}}
{{- define "agentidp.svcLabels" -}}
{{ include "agentidp.labels" .root }}
app.kubernetes.io/name: {{ include "agentidp.name" .root }}-{{ .name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Image reference. Context: dict root image. */}}
{{- define "agentidp.image" -}}
{{- $g := .root.Values.global -}}
{{- $tag := .image.tag | default $g.imageTag | default .root.Chart.AppVersion -}}
{{- if $g.imageRegistry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $g.imageRegistry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* True when the user supplied secret values (then the chart renders its own Secret). */}}
{{- define "agentidp.renderSecret" -}}
{{- $s := .Values.global.secrets -}}
{{- if or $s.internalKey $s.tokenSecretPepper $s.tokenKeyEncryptionKey $s.webhookSecretKey $s.didKeyEncryptionKey $s.analyticsCheckpointKey -}}
true
{{- end -}}
{{- end -}}

{{/* Name of the Secret with the shared secrets. */}}
{{- define "agentidp.secretName" -}}
{{- if include "agentidp.renderSecret" . -}}
{{- printf "%s-secrets" (include "agentidp.fullname" .) -}}
{{- else -}}
{{- required "global.existingSecret is required (or set global.secrets.*)" .Values.global.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "agentidp.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Env shared by the services and the bootstrap Job. Context: dict root svc(optional) name. */}}
{{- define "agentidp.commonEnv" -}}
{{- $g := .root.Values.global -}}
- name: LOG_LEVEL
  value: {{ $g.logLevel | quote }}
- name: SHUTDOWN_TIMEOUT
  value: {{ $g.shutdownTimeout | quote }}
- name: NATS_URL
  value: {{ required "global.nats.url is required" $g.nats.url | quote }}
- name: NATS_STREAM_REPLICAS
  value: {{ $g.nats.streamReplicas | quote }}
- name: AGENTIDP_INTERNAL_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "agentidp.secretName" .root }}
      key: {{ $g.secretKeys.internalKey }}
{{- end -}}

{{- define "agentidp.postgresEnv" -}}
{{- $g := .root.Values.global -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "global.postgres.existingSecret is required" $g.postgres.existingSecret }}
      key: {{ $g.postgres.secretKey }}
- name: DATABASE_SCHEMA
  value: {{ .name | quote }}
- name: DATABASE_MAX_CONNS
  value: {{ $g.postgres.maxConns | quote }}
{{- end -}}

{{- define "agentidp.redisEnv" -}}
{{- $g := .root.Values.global -}}
{{- if $g.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $g.redis.existingSecret }}
      key: {{ $g.redis.secretKey }}
{{- else }}
- name: REDIS_URL
  value: {{ required "global.redis.url or global.redis.existingSecret is required" $g.redis.url | quote }}
{{- end }}
{{- end -}}

{{- define "agentidp.tokenSecretEnv" -}}
{{- $g := .root.Values.global -}}
- name: TOKEN_SECRET_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ include "agentidp.secretName" .root }}
      key: {{ $g.secretKeys.tokenSecretPepper }}
- name: TOKEN_KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "agentidp.secretName" .root }}
      key: {{ $g.secretKeys.tokenKeyEncryptionKey }}
      {{- if $g.vault.enabled }}
      # Signing keys live in Vault: only needed to move keys of the old
      # signing_keys table at the first start after an upgrade.
      optional: true
      {{- end }}
{{- end -}}

{{/* One env var read from the shared secrets Secret. Context: dict root env key(field of global.secretKeys). */}}
{{- define "agentidp.sharedSecretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "agentidp.secretName" .root }}
      key: {{ index .root.Values.global.secretKeys .key }}
{{- end -}}

{{/* Public URL of the gateway, without a trailing slash. */}}
{{- define "agentidp.publicUrl" -}}
{{- required "global.publicUrl is required" .Values.global.publicUrl | trimSuffix "/" -}}
{{- end -}}

{{- define "agentidp.vaultEnv" -}}
{{- $v := .root.Values.global.vault -}}
{{- if $v.enabled }}
- name: VAULT_ADDR
  value: {{ required "global.vault.addr is required when global.vault.enabled" $v.addr | quote }}
- name: VAULT_MOUNT
  value: {{ $v.mount | quote }}
- name: VAULT_PATH_PREFIX
  value: {{ $v.pathPrefix | quote }}
{{- if eq $v.authMethod "token" }}
- name: VAULT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ required "global.vault.existingSecret is required" $v.existingSecret }}
      key: {{ $v.tokenKey }}
{{- else }}
- name: VAULT_ROLE_ID
  valueFrom:
    secretKeyRef:
      name: {{ required "global.vault.existingSecret is required" $v.existingSecret }}
      key: {{ $v.roleIdKey }}
- name: VAULT_SECRET_ID
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: {{ $v.secretIdKey }}
{{- end }}
{{- if $v.caSecret }}
- name: VAULT_CACERT
  value: /etc/agentidp/vault-ca/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{/* In-cluster URL of a service. Context: dict root name. */}}
{{- define "agentidp.serviceURL" -}}
{{- printf "http://%s:%v" (include "agentidp.svcname" .) .root.Values.ports.http -}}
{{- end -}}

{{/* Data of the policy ConfigMap (files shipped in the chart). */}}
{{- define "agentidp.policyData" -}}
{{- $rego := .Files.Get "files/authz.rego" -}}
{{- $scopes := .Files.Get "files/data/scopes.json" -}}
{{- if not $rego }}{{ fail "chart file files/authz.rego is missing" }}{{ end -}}
{{- if not $scopes }}{{ fail "chart file files/data/scopes.json is missing" }}{{ end -}}
authz.rego: |-
{{ $rego | trimSuffix "\n" | indent 2 }}
scopes.json: |-
{{ $scopes | trimSuffix "\n" | indent 2 }}
{{- end -}}

{{/* Data of the chart-rendered Secret, from user-supplied values only. */}}
{{- define "agentidp.secretData" -}}
{{- $g := .Values.global -}}
{{- $s := $g.secrets -}}
{{ $g.secretKeys.internalKey }}: {{ required "global.secrets.internalKey must be set when any global.secrets value is set" $s.internalKey | b64enc | quote }}
{{ $g.secretKeys.tokenSecretPepper }}: {{ required "global.secrets.tokenSecretPepper must be set when any global.secrets value is set" $s.tokenSecretPepper | b64enc | quote }}
{{- if $g.vault.enabled }}
{{- with $s.tokenKeyEncryptionKey }}
{{ $g.secretKeys.tokenKeyEncryptionKey }}: {{ . | b64enc | quote }}
{{- end }}
{{- else }}
{{ $g.secretKeys.tokenKeyEncryptionKey }}: {{ required "global.secrets.tokenKeyEncryptionKey must be set when any global.secrets value is set (and global.vault is disabled)" $s.tokenKeyEncryptionKey | b64enc | quote }}
{{- end }}
{{- $svcs := .Values.services }}
{{- if or $s.analyticsCheckpointKey $svcs.analytics.enabled }}
{{ $g.secretKeys.analyticsCheckpointKey }}: {{ required "global.secrets.analyticsCheckpointKey must be set when any global.secrets value is set (and analytics is enabled)" $s.analyticsCheckpointKey | b64enc | quote }}
{{- end }}
{{- if or $s.webhookSecretKey $svcs.webhook.enabled }}
{{ $g.secretKeys.webhookSecretKey }}: {{ required "global.secrets.webhookSecretKey must be set when any global.secrets value is set (and webhook is enabled)" $s.webhookSecretKey | b64enc | quote }}
{{- end }}
{{- if or $s.didKeyEncryptionKey $svcs.did.enabled }}
{{ $g.secretKeys.didKeyEncryptionKey }}: {{ required "global.secrets.didKeyEncryptionKey must be set when any global.secrets value is set (and did is enabled)" $s.didKeyEncryptionKey | b64enc | quote }}
{{- end }}
{{- end -}}
