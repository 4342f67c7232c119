{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "siemflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The role as a component label. */}}
{{- define "siemflow.component" -}}
{{- if eq .Values.role "sidecar-example" -}}sidecar-example{{- else -}}{{ .Values.role }}{{- end -}}
{{- end -}}

{{- define "siemflow.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "siemflow.component" . }}
{{- end -}}

{{- define "siemflow.labels" -}}
{{ include "siemflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "siemflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "siemflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "siemflow.configMapName" -}}
{{- default (include "siemflow.fullname" .) .Values.existingConfigMap -}}
{{- end -}}

{{- define "siemflow.secretName" -}}
{{- default (include "siemflow.fullname" .) .Values.secret.name -}}
{{- end -}}

{{/* The pipeline: the user's, or the role's example (files/<role>.toml, the same text as
the ConfigMaps of deploy/kubernetes/, which tests/e2e/kubernetes.rs checks). */}}
{{- define "siemflow.pipeline" -}}
{{- if .Values.pipeline -}}
{{- .Values.pipeline -}}
{{- else -}}
{{- $file := ternary "sidecar" .Values.role (eq .Values.role "sidecar-example") -}}
{{- .Files.Get (printf "files/%s.toml" $file) -}}
{{- end -}}
{{- end -}}

{{- define "siemflow.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* Measured defaults per role (bench/RESULTS.md peak RSS; docs/kubernetes.md). */}}
{{- define "siemflow.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else if eq .Values.role "collector" -}}
requests: {cpu: 250m, memory: 256Mi}
limits: {cpu: "1", memory: 512Mi}
{{- else if eq .Values.role "receiver" -}}
requests: {cpu: 500m, memory: 256Mi}
limits: {cpu: "2", memory: 512Mi}
{{- else -}}
requests: {cpu: 50m, memory: 128Mi}
limits: {cpu: 500m, memory: 256Mi}
{{- end -}}
{{- end -}}

{{/* Restarts the pods when what they read only at start changes. */}}
{{- define "siemflow.podAnnotations" -}}
{{- if and (eq .Values.config.reload "roll") (not .Values.existingConfigMap) }}
checksum/config: {{ include "siemflow.pipeline" . | sha256sum }}
{{- end }}
{{- if .Values.secret.create }}
checksum/secret: {{ toJson .Values.secret.data | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The siemflow container; `restart` makes it a native sidecar. */}}
{{- define "siemflow.container" -}}
- name: siemflow
  image: {{ include "siemflow.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .restartAlways }}
  # A native sidecar: started before the application, stopped after it.
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --log-format
    - json
    - --config
    - /etc/siemflow/pipeline.toml
    {{- if eq .Values.config.reload "watch" }}
    - --watch-config
    {{- end }}
  {{- with .Values.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: api
      containerPort: {{ .Values.api.port }}
    {{- if eq .Values.role "receiver" }}
    {{- range .Values.receiverPorts }}
    - name: {{ .name }}
      containerPort: {{ .port }}
    {{- end }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /health
      port: api
    periodSeconds: {{ .Values.probes.startup.periodSeconds }}
    failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /health
      port: api
    periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  {{- if .Values.probes.readiness.enabled }}
  readinessProbe:
    httpGet:
      path: /ready
      port: api
    periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  {{- end }}
  resources:
    {{- include "siemflow.resources" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- if eq .Values.role "sidecar-example" }}
    - name: app-logs
      mountPath: {{ .Values.sidecar.app.logDir }}
      readOnly: true
    {{- end }}
    - name: config
      mountPath: /etc/siemflow
      readOnly: true
    - name: secrets
      mountPath: /var/run/secrets/siemflow
      readOnly: true
    - name: data
      mountPath: /var/lib/siemflow
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* The pod spec of every role; `workload` adds the role's own containers. */}}
{{- define "siemflow.podSpec" -}}
serviceAccountName: {{ include "siemflow.serviceAccountName" . }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $native := and (eq .Values.role "sidecar-example") .Values.sidecar.native }}
{{- if $native }}
initContainers:
  {{- include "siemflow.container" (merge (dict "restartAlways" true) .) | nindent 2 }}
{{- end }}
containers:
  {{- if eq .Values.role "sidecar-example" }}
  {{- include "siemflow.app" . | nindent 2 }}
  {{- end }}
  {{- if not $native }}
  {{- include "siemflow.container" . | nindent 2 }}
  {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "siemflow.configMapName" . }}
  - name: secrets
    secret:
      secretName: {{ include "siemflow.secretName" . }}
      defaultMode: 0440
  {{- if ne .Values.role "collector" }}
  - name: data
    emptyDir:
      sizeLimit: 64Mi
  {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- if eq .Values.role "sidecar-example" }}
  - name: app-logs
    emptyDir:
      sizeLimit: 1Gi
  {{- end }}
{{- end -}}

{{/* The example application of the sidecar role. */}}
{{- define "siemflow.app" -}}
- name: app
  image: {{ .Values.sidecar.app.image }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  env:
    - name: AUDIT_LOG_DIR
      value: {{ .Values.sidecar.app.logDir }}
  ports:
    - name: http
      containerPort: {{ .Values.sidecar.app.port }}
  livenessProbe:
    httpGet:
      path: {{ .Values.sidecar.app.healthPath }}
      port: http
  readinessProbe:
    httpGet:
      path: {{ .Values.sidecar.app.healthPath }}
      port: http
  resources:
    {{- toYaml .Values.sidecar.app.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: app-logs
      mountPath: {{ .Values.sidecar.app.logDir }}
{{- end -}}
