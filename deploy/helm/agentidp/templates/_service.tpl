{{/*
Shared per-service templates. Every one takes the context
  dict "root" $ "name" <service name> "svc" <services.<name> values>
and is called from services.yaml, which ranges over .Values.services.
*/}}

{{- define "agentidp.deployment" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $g := $root.Values.global -}}
{{- $ctx := dict "root" $root "name" $name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "agentidp.svcname" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "agentidp.svcLabels" $ctx | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "agentidp.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "agentidp.svcLabels" $ctx | nindent 8 }}
      {{- $ann := dict }}
      {{- if and (eq $name "gateway") (not $root.Values.policy.existingConfigMap) }}
      {{- $_ := set $ann "checksum/policy" (include "agentidp.policyData" $root | sha256sum) }}
      {{- end }}
      {{- if include "agentidp.renderSecret" $root }}
      {{- $_ := set $ann "checksum/secret" (include "agentidp.secretData" $root | sha256sum) }}
      {{- end }}
      {{- $ann = merge $ann ($svc.podAnnotations | default dict) ($g.podAnnotations | default dict) }}
      {{- with $ann }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- with include "agentidp.imagePullSecrets" $root | trim }}{{ . | nindent 6 }}{{ end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $g.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $g.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ $name }}
          image: {{ include "agentidp.image" (dict "root" $root "image" $svc.image) | quote }}
          imagePullPolicy: {{ $svc.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $root.Values.ports.http }}
              protocol: TCP
            - name: internal
              containerPort: {{ $root.Values.ports.internal }}
              protocol: TCP
          env:
            - name: HTTP_ADDR
              value: {{ printf ":%v" $root.Values.ports.http | quote }}
            - name: INTERNAL_ADDR
              value: {{ printf ":%v" $root.Values.ports.internal | quote }}
            {{- include "agentidp.commonEnv" $ctx | nindent 12 }}
            {{- if $svc.postgres }}
            {{- include "agentidp.postgresEnv" $ctx | nindent 12 }}
            {{- end }}
            {{- if $svc.redis }}
            {{- with include "agentidp.redisEnv" $ctx | trim }}{{ . | nindent 12 }}{{ end }}
            {{- end }}
            {{- if $svc.vault }}
            {{- with include "agentidp.vaultEnv" $ctx | trim }}{{ . | nindent 12 }}{{ end }}
            {{- end }}
            {{- if eq $name "token" }}
            {{- include "agentidp.tokenSecretEnv" $ctx | nindent 12 }}
            - name: TOKEN_ISSUER
              value: {{ required "services.token.config.issuer is required" $svc.config.issuer | quote }}
            - name: TOKEN_AUDIENCE
              value: {{ $svc.config.audience | quote }}
            - name: TOKEN_TTL
              value: {{ $svc.config.ttl | quote }}
            - name: TOKEN_SIGNING_ALG
              value: {{ $svc.config.signingAlg | quote }}
            - name: TOKEN_KEY_ROTATION_INTERVAL
              value: {{ $svc.config.keyRotationInterval | default "720h" | quote }}
            - name: TOKEN_KEY_PUBLISH_LEAD
              value: {{ $svc.config.keyPublishLead | default "1h" | quote }}
            - name: TOKEN_ROTATION_GRACE
              value: {{ $svc.config.rotationGrace | default "0s" | quote }}
            {{- end }}
            {{- if eq $name "tier" }}
            - name: TIER_DOWNGRADE_GRACE
              value: {{ ($svc.config).downgradeGrace | default "72h" | quote }}
            {{- end }}
            {{- if eq $name "analytics" }}
            {{- include "agentidp.sharedSecretEnv" (dict "root" $root "env" "ANALYTICS_CHECKPOINT_KEY" "key" "analyticsCheckpointKey") | nindent 12 }}
            {{- end }}
            {{- if eq $name "webhook" }}
            {{- $c := $svc.config | default dict }}
            {{- include "agentidp.sharedSecretEnv" (dict "root" $root "env" "WEBHOOK_SECRET_KEY" "key" "webhookSecretKey") | nindent 12 }}
            {{- with $c.allowPrivate }}
            - name: WEBHOOK_ALLOW_PRIVATE
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.timeout }}
            - name: WEBHOOK_TIMEOUT
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.retrySchedule }}
            - name: WEBHOOK_RETRY_SCHEDULE
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.maxConcurrencyPerEndpoint }}
            - name: WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- if eq $name "did" }}
            {{- include "agentidp.sharedSecretEnv" (dict "root" $root "env" "DID_KEY_ENCRYPTION_KEY" "key" "didKeyEncryptionKey") | nindent 12 }}
            - name: DID_BASE_URL
              value: {{ include "agentidp.publicUrl" $root | quote }}
            {{- with ($svc.config).webHost }}
            - name: DID_WEB_HOST
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- if eq $name "federation" }}
            {{- $c := $svc.config | default dict }}
            - name: FEDERATION_AUDIENCE
              value: {{ $c.audience | default (include "agentidp.publicUrl" $root) | quote }}
            {{- with $c.allowPrivate }}
            - name: FEDERATION_ALLOW_PRIVATE
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- if eq $name "billing" }}
            {{- $c := $svc.config | default dict }}
            {{- $st := $c.stripe | default dict }}
            {{- with $st.existingSecret }}
            # Optional: without the Stripe keys billing runs disabled.
            - name: STRIPE_SECRET_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: {{ $st.secretKeyKey | default "STRIPE_SECRET_KEY" }}
                  optional: true
            - name: BILLING_STRIPE_WEBHOOK_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: {{ $st.webhookSecretKey | default "BILLING_STRIPE_WEBHOOK_SECRET" }}
                  optional: true
            {{- end }}
            {{- with $c.pricePro }}
            - name: BILLING_PRICE_PRO
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.priceEnterprise }}
            - name: BILLING_PRICE_ENTERPRISE
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.successUrl }}
            - name: BILLING_SUCCESS_URL
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.cancelUrl }}
            - name: BILLING_CANCEL_URL
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- if eq $name "gateway" }}
            {{- range $other, $o := $root.Values.services }}
            {{- if and $o.enabled (ne $other "gateway") }}
            - name: {{ printf "%s_SERVICE_URL" (upper $other) }}
              value: {{ include "agentidp.serviceURL" (dict "root" $root "name" $other) | quote }}
            {{- end }}
            {{- end }}
            - name: GATEWAY_ISSUER
              value: {{ $svc.config.issuer | quote }}
            - name: GATEWAY_AUDIENCE
              value: {{ $svc.config.audience | quote }}
            - name: OPA_POLICY_DIR
              value: {{ $root.Values.policy.mountPath | quote }}
            {{- with $svc.config.routes }}
            - name: GATEWAY_ROUTES
              value: {{ . | quote }}
            {{- end }}
            {{- with $svc.config.revocationMaxStaleness }}
            - name: GATEWAY_REVOCATION_MAX_STALENESS
              value: {{ . | quote }}
            {{- end }}
            {{- with $svc.config.trustedProxies }}
            - name: GATEWAY_TRUSTED_PROXIES
              value: {{ . | quote }}
            {{- end }}
            {{- with $svc.config.upstreamBreakerFailures }}
            - name: GATEWAY_UPSTREAM_BREAKER_FAILURES
              value: {{ . | quote }}
            {{- end }}
            {{- with $svc.config.upstreamBreakerCooldown }}
            - name: GATEWAY_UPSTREAM_BREAKER_COOLDOWN
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- with $svc.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            # Covers the start-up migration (advisory lock may wait for another pod).
            httpGet:
              path: /health/live
              port: internal
            periodSeconds: 2
            failureThreshold: 90
          livenessProbe:
            httpGet:
              path: /health/live
              port: internal
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            # Ready = initial state loaded and not shutting down. A shared
            # dependency (PostgreSQL, Redis, NATS, Vault) being away does NOT
            # make a pod unready: every replica shares it, and taking them all
            # out of the Service would turn 503/Retry-After into refused
            # connections. Dependencies show in /health/detailed and
            # agentidp_dependency_up (alert AgentIdPDependencyDown).
            httpGet:
              path: /health/ready
              port: internal
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          {{- if gt (int $g.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $g.preStopSleepSeconds }}
          {{- end }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- toYaml $g.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $name "gateway" }}
            - name: policy
              mountPath: {{ $root.Values.policy.mountPath }}
              readOnly: true
            {{- end }}
            {{- if and $svc.vault $g.vault.enabled $g.vault.caSecret }}
            - name: vault-ca
              mountPath: /etc/agentidp/vault-ca
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if eq $name "gateway" }}
        - name: policy
          configMap:
            name: {{ $root.Values.policy.existingConfigMap | default (printf "%s-policy" (include "agentidp.fullname" $root)) }}
            items:
              - key: authz.rego
                path: authz.rego
              - key: scopes.json
                path: data/scopes.json
        {{- end }}
        {{- if and $svc.vault $g.vault.enabled $g.vault.caSecret }}
        - name: vault-ca
          secret:
            secretName: {{ $g.vault.caSecret }}
            items:
              - key: ca.crt
                path: ca.crt
        {{- end }}
      {{- if $g.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: {{ $g.topologySpread.maxSkew }}
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: {{ $g.topologySpread.zoneWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "agentidp.selectorLabels" $ctx | nindent 14 }}
        - maxSkew: {{ $g.topologySpread.maxSkew }}
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $g.topologySpread.nodeWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "agentidp.selectorLabels" $ctx | nindent 14 }}
      {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "agentidp.service" -}}
{{- $ctx := dict "root" .root "name" .name -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "agentidp.svcname" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "agentidp.svcLabels" $ctx | nindent 4 }}
  {{- with .svc.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .svc.service.type }}
  selector:
    {{- include "agentidp.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.ports.http }}
      targetPort: http
      protocol: TCP
    - name: internal
      port: {{ .root.Values.ports.internal }}
      targetPort: internal
      protocol: TCP
{{- end -}}

{{- define "agentidp.hpa" -}}
{{- $ctx := dict "root" .root "name" .name -}}
{{- $a := .svc.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "agentidp.svcname" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "agentidp.svcLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "agentidp.svcname" $ctx }}
  minReplicas: {{ $a.min }}
  maxReplicas: {{ $a.max }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPU }}
    {{- with $a.targetMemory }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - type: Percent
          value: 50
          periodSeconds: 60
{{- end -}}

{{- define "agentidp.pdb" -}}
{{- $ctx := dict "root" .root "name" .name -}}
{{- $p := .svc.pdb -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "agentidp.svcname" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "agentidp.svcLabels" $ctx | nindent 4 }}
spec:
  {{- if hasKey $p "minAvailable" }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $p.maxUnavailable | default 1 }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "agentidp.selectorLabels" $ctx | nindent 6 }}
{{- end -}}

{{- define "agentidp.networkPolicy" -}}
{{- $root := .root -}}
{{- $ctx := dict "root" .root "name" .name -}}
{{- $np := $root.Values.networkPolicy -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "agentidp.svcname" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "agentidp.svcLabels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "agentidp.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports:
        - port: http
          protocol: TCP
      {{- if eq .name "gateway" }}
      {{- with $np.gatewayFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- else }}
      from:
        - podSelector:
            matchLabels:
              {{- include "agentidp.selectorLabels" (dict "root" $root "name" "gateway") | nindent 14 }}
      {{- end }}
    - ports:
        - port: internal
          protocol: TCP
      {{- $peer := dict }}
      {{- with $np.metrics.namespaceSelector }}{{ $_ := set $peer "namespaceSelector" . }}{{ end }}
      {{- with $np.metrics.podSelector }}{{ $_ := set $peer "podSelector" . }}{{ end }}
      {{- if $peer }}
      from:
        - {{ toYaml $peer | nindent 10 | trim }}
      {{- end }}
{{- end -}}
