metadata description = 'MLOps automation for Azure Machine Learning: a Flex Consumption function app with its storage, data lake, telemetry, Key Vault, Event Grid system topics, Data Factory and alert email. azd provisions it (azure.yaml); infra/scripts/postdeploy.sh adds what needs the deployed code.'

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name (dev, prod, ...): part of every generated name.')
param environmentName string

@minLength(1)
@description('Region of the resources (one that offers Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Name of the existing Azure ML workspace the app drives.')
param amlWorkspaceName string

@description('Resource group of the Azure ML workspace (same subscription).')
param amlResourceGroupName string

@description('Name of the workspace Event Grid system topic if the workspace already has one (another deployment\'s or team\'s): it is used, not redeployed, and never deleted by this deployment\'s teardown. Empty: this deployment creates evgt-aml-<token>.')
param amlSystemTopicName string = ''

@description('Regions the weekly retrain covers, comma-separated (MLOPS_REGIONS); empty: every region with data.')
param regions string = ''

@description('Start training when a week\'s required sources are all conditioned (MLOPS_TRAIN_ON_ARRIVAL); ADF and the weekly timer start it otherwise.')
param trainOnArrival bool = false

@description('NCRONTAB (UTC) of the weekly retrain.')
param weeklyRetrainSchedule string = '0 0 6 * * 1'

@description('NCRONTAB (UTC) of the daily staleness check.')
param stalenessSchedule string = '0 30 5 * * *'

@description('NCRONTAB (UTC) of the drift check of newly conditioned data.')
param driftSchedule string = '0 15 * * * *'

@description('NCRONTAB (UTC) of the alert outbox flush (digests and retries).')
param alertFlushSchedule string = '0 */1 * * * *'

@description('Prefix of the names of the models the app trains and tests (MLOPS_MODEL_NAME_PREFIX); the workspace ModelRegistered subscription delivers only these (infra/scripts/postdeploy.sh passes it on).')
param modelNamePrefix string = 'forecast-'

@description('Azure ML datastore this deployment creates over the data lake\'s conditioned container (MLOPS_AML_DATASTORE); pipeline inputs are read through it. Empty: mlops_<token>, one per deployment, so two environments on one workspace do not overwrite each other\'s.')
param amlDatastoreName string = ''

@description('VM size of the compute cluster this deployment creates in the workspace for its jobs (MLOPS_AML_COMPUTE).')
param amlComputeVmSize string = 'Standard_DS3_v2'

@description('Most nodes that compute cluster scales out to; it scales in to none when idle.')
@minValue(1)
param amlComputeMaxNodes int = 4

@description('Durable Functions task hub name: 3-45 letters or digits, starting with a letter.')
param taskHubName string = 'mlopshub'

@description('Memory per function instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Upper bound of the function app scale-out.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Replication of the data lake account.')
param dataLakeSkuName string = 'Standard_LRS'

@description('Days Log Analytics keeps data.')
param logRetentionInDays int = 30

@description('Key Vault purge protection (irreversible; on in prod).')
param keyVaultPurgeProtection bool = false

@description('Geography where Communication Services stores message data.')
param emailDataLocation string = 'Europe'

@description('Who receives alert email: comma-separated addresses (MLOPS_ALERT_TO).')
param alertRecipients string

@description('Who Azure Monitor pages when the app itself is unhealthy: comma-separated addresses; empty: alertRecipients. Independent of the app\'s own alert email.')
param opsAlertEmail string = ''

@description('Failed function invocations in 15 minutes above which Ops is paged.')
param functionFailureThreshold int = 5

@description('Page Ops when no raw file was conditioned for this many hours.')
param conditioningSilenceHours int = 26

@description('Whether the no-conditioning alert is on (off while no drops are expected).')
param conditioningAlertEnabled bool = true

@description('Alert emails waiting in the app\'s outbox above which Ops is paged.')
param alertOutboxMaxPending int = 10

@description('Minutes the oldest waiting alert email may wait before Ops is paged.')
param alertOutboxMaxAgeMinutes int = 60

@description('Champion age in days above which Ops is paged.')
param championMaxAgeDays int = 60

@description('Further app settings merged over the defaults below (tuning knobs such as MLOPS_POLL_MAX_SECONDS).')
param appSettingOverrides object = {}

@description('Principal (object) id of whoever runs azd; it may upload to the lake and writes the function key to Key Vault. azd fills it in.')
param principalId string = ''

@description('Kind of principalId: User locally, ServicePrincipal in CI.')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  workload: 'mlops'
}

var functionAppName = 'func-${resourceToken}'
// In the shared workspace, names carry the token: two environments on one workspace must not
// overwrite each other's datastore, compute or event subscriptions.
var amlDatastore = !empty(amlDatastoreName) ? amlDatastoreName : 'mlops_${resourceToken}'
var amlComputeName = 'mlops-${take(resourceToken, 10)}'
var createAmlSystemTopic = empty(amlSystemTopicName)
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'

// The data lake containers the code reads and writes (MLOPS_*_CONTAINER).
var rawContainerName = 'raw'
var conditionedContainerName = 'conditioned'
var quarantineContainerName = 'quarantine'
var forecastsContainerName = 'forecasts'
var alertsContainerName = 'ops'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

resource amlResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' existing = {
  name: amlResourceGroupName
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

// Functions host storage: leases, blob-trigger receipts and poison queue, the Durable task hub
// (queues and tables), the deployment package, and Event Grid dead letters.
module appStorage 'modules/storage-account.bicep' = {
  name: 'app-storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containers: [
      deploymentContainerName
      deadLetterContainerName
    ]
  }
}

module dataLake 'modules/storage-account.bicep' = {
  name: 'data-lake'
  scope: rg
  params: {
    name: 'stdl${resourceToken}'
    location: location
    tags: tags
    isHnsEnabled: true
    skuName: dataLakeSkuName
    deleteRetentionDays: 14
    containers: [
      rawContainerName
      conditionedContainerName
      quarantineContainerName
      forecastsContainerName
      alertsContainerName
    ]
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    communicationServiceName: 'acs-${resourceToken}'
    emailServiceName: 'ecs-${resourceToken}'
    dataLocation: emailDataLocation
    tags: tags
  }
}

// Every setting the code reads (adapters/settings.py) and every identity-based connection.
// tests/infra/test_consistency.py checks this object against the code.
var appSettings = {
  AzureWebJobsStorage__blobServiceUri: appStorage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: appStorage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: appStorage.outputs.tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  MLOPS_DATALAKE__blobServiceUri: dataLake.outputs.blobEndpoint
  MLOPS_DATALAKE__queueServiceUri: dataLake.outputs.queueEndpoint
  MLOPS_DATALAKE__credential: 'managedidentity'
  MLOPS_DATALAKE__clientId: identity.outputs.clientId
  // DefaultAzureCredential (Azure ML, email) picks the user-assigned identity from this.
  AZURE_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // host.json sets telemetryMode OpenTelemetry; with this the worker says it exports its own
  // logs and traces (adapters/telemetry.py), so the host does not ship them a second time.
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  MLOPS_ENVIRONMENT: 'azure'
  MLOPS_TASK_HUB: taskHubName
  MLOPS_RAW_CONTAINER: rawContainerName
  MLOPS_CONDITIONED_CONTAINER: conditionedContainerName
  MLOPS_QUARANTINE_CONTAINER: quarantineContainerName
  MLOPS_FORECASTS_CONTAINER: forecastsContainerName
  MLOPS_AML_SUBSCRIPTION_ID: subscription().subscriptionId
  MLOPS_AML_RESOURCE_GROUP: amlResourceGroupName
  MLOPS_AML_WORKSPACE: amlWorkspaceName
  MLOPS_REGIONS: regions
  MLOPS_TRAIN_ON_ARRIVAL: string(trainOnArrival)
  MLOPS_WEEKLY_RETRAIN_SCHEDULE: weeklyRetrainSchedule
  MLOPS_STALENESS_SCHEDULE: stalenessSchedule
  MLOPS_DRIFT_SCHEDULE: driftSchedule
  MLOPS_ALERT_FLUSH_SCHEDULE: alertFlushSchedule
  MLOPS_AML_DATASTORE: amlDatastore
  MLOPS_AML_COMPUTE: amlComputeName
  MLOPS_STALE_AFTER_DAYS: '60'
  MLOPS_JOB_TIMEOUT_MINUTES: '720'
  MLOPS_RETRAIN_WINDOW_HOURS: '24'
  MLOPS_START_DEDUPE_SECONDS: '120'
  // The same prefix filters the ModelRegistered subscription (subjectBeginsWith).
  MLOPS_MODEL_NAME_PREFIX: modelNamePrefix
  MLOPS_DRIFT_PSI_THRESHOLD: '0.2'
  MLOPS_TRAINING_SOURCES: 'shipments,stores,weather,events'
  MLOPS_ALERT_TRANSPORT: 'acs'
  MLOPS_ACS_ENDPOINT: communication.outputs.endpoint
  MLOPS_ALERTS_CONTAINER: alertsContainerName
  MLOPS_ALERT_WINDOW_MINUTES: '60'
  MLOPS_ALERT_MAX_PER_WINDOW: '10'
  MLOPS_ALERT_DIGEST_MINUTES: '15'
  MLOPS_ALERT_FROM: communication.outputs.senderAddress
  MLOPS_ALERT_TO: alertRecipients
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.resourceId
    deploymentBlobEndpoint: appStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: union(appSettings, appSettingOverrides)
  }
}

// Operators' view in Azure: the model-health workbook and the alert rules paging Ops.
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module opsAlerts 'modules/ops-alerts.bicep' = {
  name: 'ops-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    namePrefix: 'alert-${resourceToken}'
    opsEmails: !empty(opsAlertEmail) ? opsAlertEmail : alertRecipients
    functionFailureThreshold: functionFailureThreshold
    conditioningSilenceHours: conditioningSilenceHours
    conditioningAlertEnabled: conditioningAlertEnabled
    alertOutboxMaxPending: alertOutboxMaxPending
    alertOutboxMaxAgeMinutes: alertOutboxMaxAgeMinutes
    championMaxAgeDays: championMaxAgeDays
  }
}

module dataLakeTopic 'modules/storage-system-topic.bicep' = {
  name: 'data-lake-topic'
  scope: rg
  params: {
    name: 'evgt-dl-${resourceToken}'
    storageAccountName: dataLake.outputs.name
    tags: tags
  }
}

module amlAccess 'modules/aml-access.bicep' = {
  name: 'aml-access-${resourceToken}'
  scope: amlResourceGroup
  params: {
    workspaceName: amlWorkspaceName
    systemTopicName: createAmlSystemTopic ? 'evgt-aml-${resourceToken}' : amlSystemTopicName
    createSystemTopic: createAmlSystemTopic
    appPrincipalId: identity.outputs.principalId
    datastoreName: amlDatastore
    dataLakeAccountName: dataLake.outputs.name
    dataLakeResourceGroupName: rg.name
    conditionedContainerName: conditionedContainerName
    computeName: amlComputeName
    computeVmSize: amlComputeVmSize
    computeMaxNodes: amlComputeMaxNodes
    tags: tags
  }
}

module dataFactory 'modules/data-factory.bicep' = {
  name: 'data-factory'
  scope: rg
  params: {
    name: 'adf-${resourceToken}'
    location: location
    tags: tags
    functionAppUrl: functionApp.outputs.url
    keyVaultUri: keyVault.outputs.uri
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appStorageName: appStorage.outputs.name
    dataLakeName: dataLake.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    communicationServiceName: communication.outputs.name
    appPrincipalId: identity.outputs.principalId
    dataFactoryPrincipalId: dataFactory.outputs.principalId
    dataLakeTopicPrincipalId: dataLakeTopic.outputs.principalId
    amlTopicPrincipalId: amlAccess.outputs.systemTopicPrincipalId
    amlComputePrincipalId: amlAccess.outputs.computePrincipalId
    conditionedContainerName: conditionedContainerName
    deadLetterContainerName: deadLetterContainerName
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

// azd stores these in the environment; infra/scripts/postdeploy.sh and the workflows read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.resourceId
output AZURE_STORAGE_ACCOUNT_ID string = appStorage.outputs.resourceId
output AZURE_DATALAKE_ACCOUNT_NAME string = dataLake.outputs.name
output AZURE_DATALAKE_SYSTEM_TOPIC_NAME string = dataLakeTopic.outputs.name
output AZURE_DEADLETTER_CONTAINER_NAME string = deadLetterContainerName
output AZURE_RAW_CONTAINER_NAME string = rawContainerName
output AZURE_AML_RESOURCE_GROUP string = amlResourceGroupName
output AZURE_AML_WORKSPACE_NAME string = amlWorkspaceName
output AZURE_AML_SYSTEM_TOPIC_NAME string = amlAccess.outputs.systemTopicName
// infra/scripts/predown.sh deletes the workspace topic only if this deployment created it.
output AZURE_AML_SYSTEM_TOPIC_CREATED bool = createAmlSystemTopic
output AZURE_AML_WORKSPACE_ID string = amlAccess.outputs.workspaceId
output AZURE_AML_DATASTORE_NAME string = amlDatastore
output AZURE_AML_COMPUTE_NAME string = amlComputeName
output AZURE_AML_COMPUTE_PRINCIPAL_ID string = amlAccess.outputs.computePrincipalId
output AZURE_APP_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_MODEL_NAME_PREFIX string = modelNamePrefix
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_DATA_FACTORY_NAME string = dataFactory.outputs.name
output AZURE_DATA_FACTORY_PIPELINE_NAME string = dataFactory.outputs.pipelineName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output AZURE_DASHBOARD_URL string = '${functionApp.outputs.url}/api/dashboard/'
output AZURE_WORKBOOK_ID string = workbook.outputs.id
