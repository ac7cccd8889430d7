#!/usr/bin/env bash
# Proves deploy/kubernetes/crds/servicecatalog.k8s.io.yaml against a real Kubernetes API
# server (v1.20.2, scripts/k8s.sh): builds or finds the cached binaries, starts etcd,
# kube-apiserver and kube-controller-manager on loopback, installs the CRDs, then creates,
# reads, updates (status subresource) and deletes Service Catalog objects with plain
# HTTP (curl, the admin token), including the project's own manifests as they are
# written. Prints one line per check and `N passed, M failed` at the end; exits non-zero
# on any failure. Everything it starts is stopped on exit.
#
#   bash scripts/k8s-crd-check.sh
#
# BINDERY_K8S_CHECK_KEEP=1 keeps the work directory (logs, etcd data) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/k8s.sh

CRDS=deploy/kubernetes/crds/servicecatalog.k8s.io.yaml
SC=/apis/servicecatalog.k8s.io/v1beta1

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  echo "ok   $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL $*"
  if [[ -n ${body:-} ]]; then echo "     last response ($code): $(head -c 600 <<<"$body")"; fi
}
check() { # description, command...
  local d=$1
  shift
  if "$@"; then pass "$d"; else fail "$d"; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed == 0 ]]
}

work=$(mktemp -d /tmp/bindery-k8s-check.XXXXXX)
cleanup() {
  k8s_stop "$work/env" >/dev/null 2>&1 || true
  if [[ ${BINDERY_K8S_CHECK_KEEP:-} == 1 || $failed != 0 ]]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

t0=$(k8s_now)
if ! k8s_build; then
  failed=$((failed + 1))
  echo "FAIL the Kubernetes binaries could not be built"
  finish
  exit 1
fi
echo "time: build or cache lookup $(k8s_since "$t0") s"
t0=$(k8s_now)
if ! k8s_start "$work/env"; then
  failed=$((failed + 1))
  echo "FAIL the test environment did not start (logs: $work/env/logs)"
  finish
  exit 1
fi
echo "time: start $(k8s_since "$t0") s"
t_checks=$(k8s_now)

# ---------------------------------------------------------------------------------------
# HTTP helpers: api METHOD PATH [DATA [CONTENT-TYPE [ACCEPT]]] sets code and body. DATA is
# a string, or @file.
code=""
body=""
api() {
  local method=$1 path=$2 data=${3:-} ctype=${4:-application/json} accept=${5:-application/json}
  local args=(-sS --max-time 30 --cacert "$KUBE_CA" -H "Authorization: Bearer $KUBE_TOKEN"
    -H "Accept: $accept" -X "$method" -o "$work/response" -w '%{http_code}')
  if [[ -n $data ]]; then args+=(-H "Content-Type: $ctype" --data-binary "$data"); fi
  code=$(curl "${args[@]}" "$KUBE_API$path" 2>"$work/curl.err") || code=000
  body=$(cat "$work/response" 2>/dev/null || true)
  [[ $code != 000 ]] || body=$(cat "$work/curl.err")
}
# expect CODE METHOD PATH [DATA [CONTENT-TYPE]]: the request is answered with CODE.
expect() {
  local want=$1
  shift
  api "$@"
  [[ $code == "$want" ]]
}
# jqt FILTER: the last response body makes FILTER true.
jqt() { jq -e "$1" >/dev/null 2>&1 <<<"$body"; }
# until_true SECONDS command...: retries every 0.5 s.
until_true() {
  local end=$(($(date +%s) + $1))
  shift
  while (($(date +%s) < end)); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  return 1
}
# Splits a multi-document YAML file into $work/docs/PREFIX-N.yaml, printing the paths.
split_yaml() { # file, prefix
  mkdir -p "$work/docs"
  awk -v out="$work/docs/$2" '
    BEGIN { n = 0; f = sprintf("%s-%d.yaml", out, n) }
    /^---[[:space:]]*$/ { n++; f = sprintf("%s-%d.yaml", out, n); next }
    { print > f }' "$1"
  local f
  for f in "$work/docs/$2"-*.yaml; do
    if grep -q '^kind:' "$f"; then echo "$f"; fi
  done
}
yaml_kind() { awk '/^kind:/ { print $2; exit }' "$1"; }
yaml_name() { awk '/^metadata:/ { m = 1; next } m && /^  name:/ { print $2; exit } /^[^ #]/ { m = 0 }' "$1"; }
yaml_namespace() { awk '/^metadata:/ { m = 1; next } m && /^  namespace:/ { print $2; exit } /^[^ #]/ { m = 0 }' "$1"; }
# The collection path of a document's kind.
collection() { # kind, namespace
  case $1 in
    CustomResourceDefinition) echo /apis/apiextensions.k8s.io/v1/customresourcedefinitions ;;
    Namespace) echo /api/v1/namespaces ;;
    Secret) echo "/api/v1/namespaces/$2/secrets" ;;
    ClusterServiceBroker) echo "$SC/clusterservicebrokers" ;;
    ClusterServiceClass) echo "$SC/clusterserviceclasses" ;;
    ClusterServicePlan) echo "$SC/clusterserviceplans" ;;
    ServiceInstance) echo "$SC/namespaces/$2/serviceinstances" ;;
    ServiceBinding) echo "$SC/namespaces/$2/servicebindings" ;;
    *) return 1 ;;
  esac
}
# Creates a YAML document as it is written (the API server reads YAML).
create_yaml() { # file
  local path
  path=$(collection "$(yaml_kind "$1")" "$(yaml_namespace "$1")") || return 1
  expect 201 POST "$path" "@$1" application/yaml
}

# ---------------------------------------------------------------------------------------
echo "--- the server"
check "GET /readyz is ok" expect 200 GET /readyz
api GET /version
check "GET /version says v1.20.2" jqt '.gitVersion == "v1.20.2" and .major == "1" and .minor == "20"'

echo "--- the CRDs ($CRDS)"
crd_names=()
while read -r doc; do
  name=$(yaml_name "$doc")
  crd_names+=("$name")
  check "create CRD $name" create_yaml "$doc"
done < <(split_yaml "$CRDS" crd)
check "the file holds the five kinds" test "${#crd_names[@]}" = 5
crd_established() { # name
  api GET "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$1" &&
    jqt '(.status.conditions // []) as $c
      | ($c | any(.type == "Established" and .status == "True"))
        and ($c | any(.type == "NamesAccepted" and .status == "True"))
        and ($c | all(.type != "NonStructuralSchema"))'
}
for name in "${crd_names[@]}"; do
  check "CRD $name is Established, its names accepted, its schema structural" until_true 30 crd_established "$name"
done

api GET "$SC"
check "discovery: the five resources with their scope, short names, category and status subresource" jqt '
  [.resources[] | {key: .name, value: .}] | from_entries
  | (.clusterservicebrokers.namespaced == false and .clusterservicebrokers.shortNames == ["csb"])
    and (.clusterserviceclasses.namespaced == false and .clusterserviceclasses.shortNames == ["csc"])
    and (.clusterserviceplans.namespaced == false and .clusterserviceplans.shortNames == ["csp"])
    and (.serviceinstances.namespaced == true and .serviceinstances.shortNames == ["si"])
    and (.servicebindings.namespaced == true and .servicebindings.shortNames == ["sb"])
    and ([.clusterservicebrokers, .clusterserviceclasses, .clusterserviceplans, .serviceinstances, .servicebindings]
         | all(.categories | index("servicecatalog")))
    and (has("clusterservicebrokers/status") and has("clusterserviceclasses/status")
         and has("clusterserviceplans/status") and has("serviceinstances/status")
         and has("servicebindings/status"))'

echo "--- the project's own manifests, as written"
broker_doc=""
for doc in $(split_yaml deploy/kubernetes/bindery.yaml bindery); do
  if [[ $(yaml_kind "$doc") == ClusterServiceBroker ]]; then broker_doc=$doc; fi
done
check "deploy/kubernetes/bindery.yaml has a ClusterServiceBroker" test -n "$broker_doc"
check "create the ClusterServiceBroker of deploy/kubernetes/bindery.yaml" create_yaml "$broker_doc"
broker=$(yaml_name "$broker_doc")
for doc in $(split_yaml deploy/kubernetes/examples.yaml examples); do
  check "create the $(yaml_kind "$doc") $(yaml_name "$doc") of deploy/kubernetes/examples.yaml" create_yaml "$doc"
done

echo "--- read back"
api GET "$SC/clusterservicebrokers/$broker"
check "broker: url, authInfo.basic.secretRef, relistBehavior and relistDuration as written" jqt '
  .apiVersion == "servicecatalog.k8s.io/v1beta1" and .kind == "ClusterServiceBroker"
  and .spec.url == "http://bindery.bindery.svc.cluster.local"
  and .spec.authInfo.basic.secretRef == {"namespace": "bindery", "name": "bindery-broker-auth"}
  and .spec.relistBehavior == "Duration" and .spec.relistDuration == "15m0s"'
check "broker: relistRequests defaulted to 0 by the schema" jqt '.spec.relistRequests == 0'
broker_generation=$(jq -r .metadata.generation <<<"$body" 2>/dev/null || echo 0)
check "create a broker with only spec.url" expect 201 POST "$SC/clusterservicebrokers" \
  '{"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ClusterServiceBroker", "metadata": {"name": "minimal"},
    "spec": {"url": "https://broker.example"}}'
check "  (relistBehavior defaulted to Duration, relistRequests to 0)" jqt '
  .spec == {"url": "https://broker.example", "relistBehavior": "Duration", "relistRequests": 0}'
check "delete the broker minimal" expect 200 DELETE "$SC/clusterservicebrokers/minimal"
api GET "$SC/namespaces/shop/serviceinstances/orders-db"
check "instance: class and plan external names, free-form parameters kept" jqt '
  .spec.clusterServiceClassExternalName == "postgresql" and .spec.clusterServicePlanExternalName == "small"
  and .spec.parameters == {"connection_limit": 10} and .spec.updateRequests == 0'
api GET "$SC/namespaces/shop/servicebindings/orders-db-app"
check "binding: instanceRef, secretName and parameters" jqt '
  .spec.instanceRef.name == "orders-db" and .spec.secretName == "orders-db-credentials"
  and .spec.parameters == {"read_only": false}'
binding_uid=$(jq -r .metadata.uid <<<"$body" 2>/dev/null || true)
api GET "$SC/servicebindings"
check "list servicebindings across namespaces" jqt '.kind == "ServiceBindingList" and (.items | length) == 1'

echo "--- classes and plans, as a controller writes them from a catalog"
check "create a ClusterServiceClass with externalMetadata, tags and requires" expect 201 POST "$SC/clusterserviceclasses" '{
  "apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ClusterServiceClass",
  "metadata": {"name": "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468"},
  "spec": {"clusterServiceBrokerName": "bindery", "externalName": "postgresql",
    "externalID": "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468", "description": "PostgreSQL databases",
    "bindable": true, "planUpdatable": true, "bindingRetrievable": true, "tags": ["sql"], "requires": [],
    "externalMetadata": {"displayName": "PostgreSQL", "shareable": true, "nested": {"a": [1, 2]}}}}'
check "class: externalMetadata kept whole" jqt '.spec.externalMetadata.nested.a == [1, 2] and .spec.bindable == true'
check "create a ClusterServicePlan with clusterServiceClassRef and parameter schemas" expect 201 POST "$SC/clusterserviceplans" '{
  "apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ClusterServicePlan",
  "metadata": {"name": "86064792-7ea2-467b-af93-ac9694d96d52"},
  "spec": {"clusterServiceBrokerName": "bindery", "externalName": "small",
    "externalID": "86064792-7ea2-467b-af93-ac9694d96d52", "description": "A small database", "free": true,
    "clusterServiceClassRef": {"name": "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468"},
    "externalMetadata": {"bullets": ["1 GB"]},
    "instanceCreateParameterSchema": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
      "properties": {"connection_limit": {"type": "integer", "minimum": 1}}},
    "instanceUpdateParameterSchema": {"type": "object"},
    "serviceBindingCreateParameterSchema": {"type": "object", "properties": {"read_only": {"type": "boolean"}}}}}'
check "plan: the parameter schemas kept whole" jqt '
  .spec.instanceCreateParameterSchema.properties.connection_limit.minimum == 1
  and .spec.serviceBindingCreateParameterSchema.properties.read_only.type == "boolean"
  and .spec.clusterServiceClassRef.name == "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468" and .spec.free == true'

echo "--- pruning"
check "create a binding with an unknown spec field and free-form parameters" expect 201 POST "$SC/namespaces/shop/servicebindings" '{
  "apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceBinding",
  "metadata": {"name": "pruned"},
  "spec": {"instanceRef": {"name": "orders-db"}, "notAField": 1,
    "parameters": {"deep": {"any": ["thing"]}},
    "parametersFrom": [{"secretKeyRef": {"name": "s", "key": "k"}}],
    "secretTransforms": [{"renameKey": {"from": "uri", "to": "DATABASE_URL"}},
      {"addKey": {"key": "x", "stringValue": "y"}}, {"removeKey": {"key": "password"}}]}}'
check "the unknown field is pruned, parameters and secretTransforms kept" jqt '
  (.spec | has("notAField") | not) and .spec.parameters.deep.any == ["thing"]
  and .spec.parametersFrom[0].secretKeyRef == {"name": "s", "key": "k"}
  and .spec.secretTransforms[0].renameKey.to == "DATABASE_URL" and (.spec.secretTransforms | length) == 3'

echo "--- the status subresource"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
check "PATCH the broker's /status (conditions, generations, times)" expect 200 PATCH "$SC/clusterservicebrokers/$broker/status" "{
  \"status\": {\"conditions\": [{\"type\": \"Ready\", \"status\": \"True\", \"reason\": \"FetchedCatalog\",
    \"message\": \"Successfully fetched catalog entries from broker.\", \"lastTransitionTime\": \"$now\"}],
    \"observedGeneration\": $broker_generation, \"reconciledGeneration\": $broker_generation,
    \"lastCatalogRetrievalTime\": \"$now\", \"operationStartTime\": \"$now\", \"lastConditionState\": \"Ready\"}}" \
  application/merge-patch+json
check "the broker's status is stored, its generation unchanged" jqt "
  .status.conditions[0].type == \"Ready\" and .status.conditions[0].status == \"True\"
  and .status.observedGeneration == $broker_generation and .status.lastCatalogRetrievalTime == \"$now\"
  and .metadata.generation == $broker_generation"
check "a status sent to the main resource is ignored; a spec change bumps the generation" expect 200 PATCH \
  "$SC/clusterservicebrokers/$broker" '{"spec": {"relistRequests": 1}, "status": {"lastConditionState": "Ignored"}}' \
  application/merge-patch+json
check "  (relistRequests 1, generation +1, status as before)" jqt "
  .spec.relistRequests == 1 and .metadata.generation == $((broker_generation + 1))
  and .status.lastConditionState == \"Ready\""
check "a spec sent to /status is ignored" expect 200 PATCH "$SC/clusterservicebrokers/$broker/status" \
  '{"spec": {"url": "http://elsewhere"}}' application/merge-patch+json
check "  (url unchanged)" jqt '.spec.url == "http://bindery.bindery.svc.cluster.local"'
check "PATCH the instance's /status as during an asynchronous provision" expect 200 PATCH \
  "$SC/namespaces/shop/serviceinstances/orders-db/status" "{\"status\": {
    \"conditions\": [{\"type\": \"Ready\", \"status\": \"False\", \"reason\": \"Provisioning\",
      \"message\": \"The instance is being provisioned asynchronously\", \"lastTransitionTime\": \"$now\"}],
    \"asyncOpInProgress\": true, \"orphanMitigationInProgress\": false, \"lastOperation\": \"op-1\",
    \"currentOperation\": \"Provision\", \"provisionStatus\": \"\", \"deprovisionStatus\": \"Required\",
    \"dashboardURL\": \"https://bindery.example/dashboard\", \"reconciledGeneration\": 1, \"observedGeneration\": 1,
    \"operationStartTime\": \"$now\",
    \"inProgressProperties\": {\"clusterServicePlanExternalName\": \"small\",
      \"clusterServicePlanExternalID\": \"86064792-7ea2-467b-af93-ac9694d96d52\",
      \"parameters\": {\"connection_limit\": 10}, \"parameterChecksum\": \"abc\"},
    \"userSpecifiedClassName\": \"ClusterServiceClass/postgresql\",
    \"userSpecifiedPlanName\": \"small\", \"lastConditionState\": \"Provisioning\"}}" application/merge-patch+json
check "  (stored)" jqt '.status.asyncOpInProgress == true and .status.lastOperation == "op-1"
  and .status.currentOperation == "Provision" and .status.inProgressProperties.parameters.connection_limit == 10'
finished_instance=$(jq -c '.status.conditions[0] += {"status": "True", "reason": "ProvisionedSuccessfully"}
  | .status.lastConditionState = "Ready" | .status.provisionStatus = "Provisioned"
  | .status.asyncOpInProgress = false
  | .status.externalProperties = .status.inProgressProperties
  | .status.currentOperation = null | .status.lastOperation = null | .status.inProgressProperties = null
  | .status.operationStartTime = null' <<<"$body" 2>/dev/null || true)
check "PUT the instance's /status with null for the finished operation's fields" expect 200 PUT \
  "$SC/namespaces/shop/serviceinstances/orders-db/status" "$finished_instance"
check "  (Provisioned; the null fields are dropped, not stored as null)" jqt '
  .status.provisionStatus == "Provisioned" and .status.externalProperties.clusterServicePlanExternalName == "small"
  and (.status | has("currentOperation") or has("lastOperation") or has("inProgressProperties")
       or has("operationStartTime") | not)'
check "PATCH the binding's /status (unbindStatus, externalProperties)" expect 200 PATCH \
  "$SC/namespaces/shop/servicebindings/orders-db-app/status" "{\"status\": {
    \"conditions\": [{\"type\": \"Ready\", \"status\": \"True\", \"reason\": \"InjectedBindResult\",
      \"message\": \"Injected bind result\", \"lastTransitionTime\": \"$now\"}],
    \"asyncOpInProgress\": false, \"unbindStatus\": \"Required\", \"reconciledGeneration\": 1,
    \"observedGeneration\": 1, \"orphanMitigationInProgress\": false,
    \"externalProperties\": {\"parameters\": {\"read_only\": false}, \"parameterChecksum\": \"def\"},
    \"lastConditionState\": \"Ready\"}}" application/merge-patch+json
check "  (stored)" jqt '.status.unbindStatus == "Required" and .status.externalProperties.parameters.read_only == false'
check "PATCH the plan's /status (removedFromBrokerCatalog)" expect 200 PATCH \
  "$SC/clusterserviceplans/86064792-7ea2-467b-af93-ac9694d96d52/status" \
  '{"status": {"removedFromBrokerCatalog": true}}' application/merge-patch+json

echo "--- printer columns (what kubectl get shows)"
table=application/json\;as=Table\;v=v1\;g=meta.k8s.io
api GET "$SC/clusterservicebrokers" "" "" "$table"
check "brokers: URL, Status, Age = bindery's URL, Ready" jqt '
  ([.columnDefinitions[].name] == ["Name", "URL", "Status", "Age"])
  and .rows[0].cells[0:3] == ["bindery", "http://bindery.bindery.svc.cluster.local", "Ready"]'
api GET "$SC/namespaces/shop/serviceinstances" "" "" "$table"
check "instances: Class, Plan, Status, Age" jqt '
  ([.columnDefinitions[].name] == ["Name", "Class", "Plan", "Status", "Age"])
  and .rows[0].cells[0:4] == ["orders-db", "ClusterServiceClass/postgresql", "small", "Ready"]'
api GET "$SC/namespaces/shop/servicebindings/orders-db-app" "" "" "$table"
check "bindings: Service-Instance, Secret-Name, Status, Age" jqt '
  ([.columnDefinitions[].name] == ["Name", "Service-Instance", "Secret-Name", "Status", "Age"])
  and .rows[0].cells[0:4] == ["orders-db-app", "orders-db", "orders-db-credentials", "Ready"]'
api GET "$SC/clusterserviceplans" "" "" "$table"
check "plans: External-Name, Broker, Class, Age" jqt '
  ([.columnDefinitions[] | select((.priority // 0) == 0) | .name] == ["Name", "External-Name", "Broker", "Class", "Age"])
  and .rows[0].cells[1:4] == ["small", "bindery", "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468"]'

echo "--- what the server refuses (422)"
refused() { # description, path, json, [method, content type]: answered 422
  check "refused: $1" expect 422 "${4:-POST}" "$2" "$3" "${5:-application/json}"
}
broker_json() { echo "{\"apiVersion\": \"servicecatalog.k8s.io/v1beta1\", \"kind\": \"ClusterServiceBroker\",
  \"metadata\": {\"name\": \"bad\"}, \"spec\": $1}"; }
refused "a broker whose spec.url is a number (spec.url: 5)" "$SC/clusterservicebrokers" "$(broker_json '{"url": 5}')"
check "  (the error names spec.url)" jqt '.reason == "Invalid" and (.details.causes | any(.field == "spec.url"))'
refused "a broker without spec.url" "$SC/clusterservicebrokers" "$(broker_json '{"relistBehavior": "Manual"}')"
refused "a broker without spec" "$SC/clusterservicebrokers" \
  '{"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ClusterServiceBroker", "metadata": {"name": "bad"}}'
refused "a broker with both basic and bearer auth" "$SC/clusterservicebrokers" "$(broker_json '{"url": "http://b",
  "authInfo": {"basic": {"secretRef": {"namespace": "a", "name": "b"}}, "bearer": {"secretRef": {"namespace": "a", "name": "b"}}}}')"
refused "a broker's secretRef without namespace" "$SC/clusterservicebrokers" "$(broker_json '{"url": "http://b",
  "authInfo": {"bearer": {"secretRef": {"name": "b"}}}}')"
refused "relistBehavior Sometimes" "$SC/clusterservicebrokers" "$(broker_json '{"url": "http://b", "relistBehavior": "Sometimes"}')"
refused "relistDuration \"15 minutes\"" "$SC/clusterservicebrokers" "$(broker_json '{"url": "http://b", "relistDuration": "15 minutes"}')"
refused "relistDuration with relistBehavior Manual" "$SC/clusterservicebrokers" \
  "$(broker_json '{"url": "http://b", "relistBehavior": "Manual", "relistDuration": "5m"}')"
refused "caBundle with insecureSkipTLSVerify true" "$SC/clusterservicebrokers" \
  "$(broker_json '{"url": "https://b", "caBundle": "aGVsbG8=", "insecureSkipTLSVerify": true}')"
refused "a caBundle that is not base64" "$SC/clusterservicebrokers" "$(broker_json '{"url": "https://b", "caBundle": "not base64!"}')"
refused "a negative relistRequests" "$SC/clusterservicebrokers" "$(broker_json '{"url": "http://b", "relistRequests": -1}')"
instance_json() { echo "{\"apiVersion\": \"servicecatalog.k8s.io/v1beta1\", \"kind\": \"ServiceInstance\",
  \"metadata\": {\"name\": \"bad\"}, \"spec\": $1}"; }
refused "an instance naming no class" "$SC/namespaces/shop/serviceinstances" \
  "$(instance_json '{"clusterServicePlanExternalName": "small"}')"
refused "an instance naming its class twice" "$SC/namespaces/shop/serviceinstances" \
  "$(instance_json '{"clusterServiceClassExternalName": "postgresql", "clusterServiceClassName": "x"}')"
refused "an instance naming two plans" "$SC/namespaces/shop/serviceinstances" \
  "$(instance_json '{"clusterServiceClassExternalName": "postgresql", "clusterServicePlanExternalName": "small",
    "clusterServicePlanName": "x"}')"
refused "an instance whose parameters are not an object" "$SC/namespaces/shop/serviceinstances" \
  "$(instance_json '{"clusterServiceClassExternalName": "postgresql", "parameters": "x"}')"
refused "parametersFrom without the key" "$SC/namespaces/shop/serviceinstances" \
  "$(instance_json '{"clusterServiceClassExternalName": "postgresql", "parametersFrom": [{"secretKeyRef": {"name": "s"}}]}')"
refused "a binding without instanceRef" "$SC/namespaces/shop/servicebindings" \
  '{"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceBinding", "metadata": {"name": "bad"}, "spec": {"secretName": "s"}}'
refused "a plan without clusterServiceClassRef" "$SC/clusterserviceplans" \
  '{"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ClusterServicePlan", "metadata": {"name": "bad"},
    "spec": {"clusterServiceBrokerName": "bindery", "externalName": "x", "externalID": "x"}}'
refused "provisionStatus Maybe through /status" "$SC/namespaces/shop/serviceinstances/orders-db/status" \
  '{"status": {"provisionStatus": "Maybe"}}' PATCH application/merge-patch+json
refused "a condition status other than True, False, Unknown" "$SC/namespaces/shop/servicebindings/orders-db-app/status" \
  '{"status": {"conditions": [{"type": "Ready", "status": "Yes"}]}}' PATCH application/merge-patch+json
api GET "$SC/clusterservicebrokers"
check "none of the refused objects was stored" jqt '[.items[].metadata.name] == ["bindery"]'

echo "--- the controller-manager"
api GET /api/v1/namespaces/shop/serviceaccounts/default
check "the service-account controller made shop's default service account" jqt '.metadata.name == "default"'
sa_token() {
  api GET /api/v1/namespaces/shop/secrets &&
    jqt 'any(.items[]; .type == "kubernetes.io/service-account-token" and (.data.token | length) > 0)'
}
check "the token controller made its token (signed with the service-account key)" until_true 30 sa_token
check "create a Secret owned by the binding orders-db-app" expect 201 POST /api/v1/namespaces/shop/secrets "{
  \"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"orders-db-credentials\",
    \"ownerReferences\": [{\"apiVersion\": \"servicecatalog.k8s.io/v1beta1\", \"kind\": \"ServiceBinding\",
      \"name\": \"orders-db-app\", \"uid\": \"$binding_uid\", \"controller\": true, \"blockOwnerDeletion\": true}]},
  \"stringData\": {\"uri\": \"postgresql://u:p@h/db\"}}"
check "delete the binding orders-db-app" expect 200 DELETE "$SC/namespaces/shop/servicebindings/orders-db-app"
secret_gone() { expect 404 GET /api/v1/namespaces/shop/secrets/orders-db-credentials; }
t_gc=$(k8s_now)
check "the garbage collector deletes the binding's Secret" until_true 90 secret_gone
echo "time: garbage collection $(k8s_since "$t_gc") s"
check "delete the namespace shop" expect 200 DELETE /api/v1/namespaces/shop
namespace_gone() { expect 404 GET /api/v1/namespaces/shop; }
t_ns=$(k8s_now)
check "the namespace controller empties and finalises shop" until_true 90 namespace_gone
echo "time: namespace deletion $(k8s_since "$t_ns") s"
api GET "$SC/serviceinstances"
check "  (no ServiceInstance is left)" jqt '.items == []'
check "the cluster-scoped broker outlives the namespace" expect 200 GET "$SC/clusterservicebrokers/$broker"
check "delete the broker" expect 200 DELETE "$SC/clusterservicebrokers/$broker"
for name in "${crd_names[@]}"; do
  check "delete CRD $name" expect 200 DELETE "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name"
done
echo "time: checks $(k8s_since "$t_checks") s"

echo "--- stop"
pids=$(cat "$work"/env/run/*.pid 2>/dev/null | tr '\n' ' ')
t0=$(k8s_now)
k8s_stop "$work/env"
echo "time: stop $(k8s_since "$t0") s"
none_left() {
  local p
  for p in $pids; do
    if kill -0 "$p" 2>/dev/null; then return 1; fi
  done
  return 0
}
check "k8s_stop leaves none of etcd, kube-apiserver, kube-controller-manager running ($pids)" none_left
finish
