{{/* Name of every object of the release (and of the ServiceAccount, Service and ClusterRole). */}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
{{ include "portcullis.metaLabels" . }}
{{- end -}}

{{- define "portcullis.metaLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The controller Pods. */}}
{{- define "portcullis.selectorLabels" -}}
{{ include "portcullis.instanceLabels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "portcullis.instanceLabels" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The metrics Service (selected by the ServiceMonitor). */}}
{{- define "portcullis.metricsLabels" -}}
{{ include "portcullis.instanceLabels" . }}
app.kubernetes.io/component: metrics
{{- end -}}

{{- define "portcullis.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A duration of the binary (250ms, 5s, 2m, 1h) in whole seconds, rounded up. */}}
{{- define "portcullis.seconds" -}}
{{- $d := toString . -}}
{{- $num := regexFind "^[0-9]+" $d -}}
{{- $unit := trimPrefix $num $d -}}
{{- $n := $num | int -}}
{{- if not $num -}}{{ fail (printf "%q is not a duration such as 250ms, 5s, 2m or 1h" $d) }}
{{- else if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" -}}{{ $n }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600 }}
{{- else -}}{{ fail (printf "%q is not a duration such as 250ms, 5s, 2m or 1h" $d) }}
{{- end -}}
{{- end -}}

{{/*
Pod termination budget: the preStop sleep, then (after SIGTERM) --shutdown-drain-delay while
traffic is still served, then --shutdown-grace-period for open requests, plus 5 s to exit.
*/}}
{{- define "portcullis.terminationGracePeriodSeconds" -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- $drain := include "portcullis.seconds" .Values.controller.shutdownDrainDelay | int -}}
{{- $grace := include "portcullis.seconds" .Values.controller.shutdownGracePeriod | int -}}
{{- add (int .Values.preStopDelaySeconds) $drain $grace 5 -}}
{{- end -}}
{{- end -}}

{{/* namespace/name of the Service published in Ingress status; empty when none. */}}
{{- define "portcullis.publishService" -}}
{{- if not .Values.controller.publishAddress -}}
{{- with .Values.controller.publishService -}}
{{- if contains "/" . -}}{{ . }}{{- else -}}{{ printf "%s/%s" $.Release.Namespace . }}{{- end -}}
{{- else -}}
{{- if .Values.service.enabled -}}{{ printf "%s/%s" .Release.Namespace (include "portcullis.fullname" .) }}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the controller writes Ingress status (--publish-service or --publish-address). */}}
{{- define "portcullis.publishes" -}}
{{- if or .Values.controller.publishAddress (include "portcullis.publishService" .) -}}true{{- end -}}
{{- end -}}

{{- define "portcullis.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.acme.clusterResourceNamespace -}}
{{- end -}}

{{- define "portcullis.electionNamespace" -}}
{{- default .Release.Namespace .Values.controller.electionNamespace -}}
{{- end -}}

{{/* The port clients use for HTTPS: the host port in DaemonSet host-port mode, else the Service's. */}}
{{- define "portcullis.httpsRedirectPort" -}}
{{- if not (kindIs "invalid" .Values.controller.httpsRedirectPort) -}}
{{- .Values.controller.httpsRedirectPort -}}
{{- else if and (eq .Values.kind "DaemonSet") .Values.daemonset.hostPorts.enabled -}}
{{- .Values.daemonset.hostPorts.https -}}
{{- else -}}
{{- .Values.service.ports.https -}}
{{- end -}}
{{- end -}}

{{/* The flags of `portcullis serve`: one per `controller.*` and `acme.*` value (docs/install.md). */}}
{{- define "portcullis.args" -}}
{{- $c := .Values.controller -}}
{{- $addr := $c.listenAddress -}}
{{- if and (contains ":" $addr) (not (hasPrefix "[" $addr)) }}{{ $addr = printf "[%s]" $addr }}{{ end -}}
- serve
- --http-listen={{ $addr }}:{{ $c.containerPorts.http }}
- --https-listen={{ $addr }}:{{ $c.containerPorts.https }}
- --admin-listen={{ $addr }}:{{ $c.containerPorts.admin }}
- --ingress-class={{ .Values.ingressClass.name }}
- --controller-name={{ .Values.ingressClass.controllerName }}
{{- if $c.watchIngressWithoutClass }}
- --watch-ingress-without-class
{{- end }}
{{- with $c.watchNamespaces }}
- --watch-namespace={{ join "," . }}
{{- end }}
{{- with include "portcullis.publishService" . }}
- --publish-service={{ . }}
{{- end }}
{{- with $c.publishAddress }}
- --publish-address={{ join "," . }}
{{- end }}
{{- if $c.leaderElect }}
- --leader-elect
- --election-id={{ $c.electionId }}
- --election-namespace={{ include "portcullis.electionNamespace" . }}
{{- end }}
{{- with $c.defaultCertificate }}
- --default-certificate={{ . }}
{{- end }}
{{- with $c.defaultBackend }}
- --default-backend={{ . }}
{{- end }}
{{- with $c.trustedProxies }}
- --trusted-proxies={{ join "," . }}
{{- end }}
- --log-format={{ $c.logFormat }}
{{- if $c.allowExternalNameServices }}
- --allow-external-name-services
{{- end }}
- --upstream-connect-timeout={{ $c.upstreamConnectTimeout }}
- --upstream-response-timeout={{ $c.upstreamResponseTimeout }}
- --client-header-timeout={{ $c.clientHeaderTimeout }}
- --client-body-timeout={{ $c.clientBodyTimeout }}
- --client-send-timeout={{ $c.clientSendTimeout }}
- --keepalive-timeout={{ $c.keepaliveTimeout }}
- --tls-handshake-timeout={{ $c.tlsHandshakeTimeout }}
- --max-connections={{ int64 $c.maxConnections }}
- --http1-fast-path={{ $c.http1FastPath }}
- --max-concurrent-streams={{ int64 $c.maxConcurrentStreams }}
- --max-request-header-bytes={{ int64 $c.maxRequestHeaderBytes }}
- --max-request-body-bytes={{ int64 $c.maxRequestBodyBytes }}
- --https-redirect-port={{ include "portcullis.httpsRedirectPort" . }}
- --shutdown-drain-delay={{ $c.shutdownDrainDelay }}
- --shutdown-grace-period={{ $c.shutdownGracePeriod }}
- --worker-threads={{ int64 $c.workerThreads }}
- --idle-spin={{ $c.idleSpin }}
- --acme={{ .Values.acme.enabled }}
{{- if .Values.acme.enabled }}
{{- if .Values.acme.certManagerAnnotations }}
- --acme-cert-manager-annotations
{{- end }}
- --acme-backoff-base={{ .Values.acme.backoffBase }}
- --acme-challenge-propagation-delay={{ .Values.acme.challengePropagationDelay }}
- --acme-ari-max-poll={{ .Values.acme.ariMaxPoll }}
- --cluster-resource-namespace={{ include "portcullis.clusterResourceNamespace" . }}
{{- end }}
{{- range $c.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
RBAC rules needed in every watched scope (all namespaces, or each of controller.watchNamespaces):
exactly the reflectors of src/source/kube.rs and the writes of src/status/writer.rs
(src/source/preflight.rs lists the same permissions and checks them at start-up).
*/}}
{{- define "portcullis.scopedRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch"]
{{- if include "portcullis.publishes" . }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["patch"]
{{- end }}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.acme.enabled }}
# ACME: AcmeCertificates per Ingress TLS entry, issuers, and the certificates' and account
# keys' Secrets (read by name, written).
- apiGroups: ["portcullis.dev"]
  resources: ["acmecertificates"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["portcullis.dev"]
  resources: ["acmeissuers"]
  verbs: ["get"]
- apiGroups: ["portcullis.dev"]
  resources: ["acmecertificates/status", "acmeissuers/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update"]
{{- end }}
{{- end -}}

{{/* The pod template shared by the Deployment and the DaemonSet. */}}
{{- define "portcullis.podTemplate" -}}
metadata:
  labels:
    {{- include "portcullis.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "portcullis.serviceAccountName" . }}
  automountServiceAccountToken: true
  # No docker-link variables: a Service named portcullis would inject PORTCULLIS_* variables,
  # the prefix of the binary's own flags.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "portcullis.terminationGracePeriodSeconds" . }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if and (eq .Values.kind "Deployment") (ne .Values.podAntiAffinity "none") }}
  affinity:
    podAntiAffinity:
      {{- if eq .Values.podAntiAffinity "hard" }}
      requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "portcullis.selectorLabels" . | nindent 12 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "portcullis.selectorLabels" . | nindent 14 }}
      {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
  - name: portcullis
    image: {{ include "portcullis.image" . | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      {{- include "portcullis.args" . | nindent 6 }}
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    ports:
    - name: http
      containerPort: {{ .Values.controller.containerPorts.http }}
      protocol: TCP
      {{- if and (eq .Values.kind "DaemonSet") .Values.daemonset.hostPorts.enabled }}
      hostPort: {{ .Values.daemonset.hostPorts.http }}
      {{- end }}
    - name: https
      containerPort: {{ .Values.controller.containerPorts.https }}
      protocol: TCP
      {{- if and (eq .Values.kind "DaemonSet") .Values.daemonset.hostPorts.enabled }}
      hostPort: {{ .Values.daemonset.hostPorts.https }}
      {{- end }}
    - name: admin
      containerPort: {{ .Values.controller.containerPorts.admin }}
      protocol: TCP
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      {{- toYaml .Values.readinessProbe | nindent 6 }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      {{- toYaml .Values.livenessProbe | nindent 6 }}
    {{- if gt (int .Values.preStopDelaySeconds) 0 }}
    lifecycle:
      preStop:
        sleep:
          seconds: {{ int .Values.preStopDelaySeconds }}
    {{- end }}
    {{- with .Values.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
