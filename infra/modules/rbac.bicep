metadata description = 'Every role assignment in the application resource group, in one place: data-plane roles only, each on the narrowest scope it is needed on. docs/permissions.md says which operation needs each; tests/infra/test_permissions.py holds the two against each other.'

@description('Name of the storage account that backs the Functions host (AzureWebJobsStorage, Durable task hub, deployment package, dead letters).')
param appStorageName string

@description('Name of the data lake storage account (raw, conditioned, quarantine, forecasts).')
param dataLakeName string

@description('Name of Application Insights.')
param applicationInsightsName string

@description('Name of the Key Vault.')
param keyVaultName string

@description('Name of the Communication Services resource that sends alert email.')
param communicationServiceName string

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Principal id of the Data Factory identity.')
param dataFactoryPrincipalId string

@description('Principal id of the data lake system topic identity (it dead-letters raw blob events).')
param dataLakeTopicPrincipalId string

@description('Principal id of the workspace system topic identity (it dead-letters workspace events).')
param amlTopicPrincipalId string

@description('Principal id of the compute cluster identity the app\'s Azure ML jobs read conditioned data with.')
param amlComputePrincipalId string

@description('Container of conditioned data in the data lake.')
param conditionedContainerName string

@description('Container in the host storage that receives undeliverable events.')
param deadLetterContainerName string

@description('Optional principal (the deployer, a CI service principal) that runs the post-deploy script and inspects data. Empty: none.')
param operatorPrincipalId string = ''

@description('Kind of the operator principal.')
@allowed(['User', 'ServicePrincipal', 'Group'])
param operatorPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c'
}

// Host storage: blob (leases, receipts, deployment package), queues and tables (Durable task hub).
var appStorageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

// Data lake: the Event Grid blob trigger needs blob owner and queue access on its connection.
var dataLakeRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
]

var hasOperator = !empty(operatorPrincipalId)

resource appStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: appStorageName
}

resource appStorageBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: appStorage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: appStorageBlobs
  name: deadLetterContainerName
}

resource dataLake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataLakeName
}

resource dataLakeBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: dataLake
  name: 'default'
}

resource conditionedContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: dataLakeBlobs
  name: conditionedContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource appOnAppStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appStorageRoles: {
    name: guid(appStorage.id, appPrincipalId, roleId)
    scope: appStorage
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]

resource appOnDataLake 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in dataLakeRoles: {
    name: guid(dataLake.id, appPrincipalId, roleId)
    scope: dataLake
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]

// Application Insights has local auth disabled: ingestion needs this role on the component.
resource appOnApplicationInsights 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Sending email with an Entra token is authorised by a role on the Communication Services resource.
resource appOnCommunicationService 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, appPrincipalId, roles.contributor)
  scope: communicationService
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.contributor)
  }
}

// The app's jobs read conditioned data through the identity-based datastore with the compute
// cluster's identity: read, on that one container.
resource computeOnConditioned 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(conditionedContainer.id, amlComputePrincipalId, roles.storageBlobDataReader)
  scope: conditionedContainer
  properties: {
    principalId: amlComputePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
  }
}

// Data Factory reads the function key from the vault for its Azure Function linked service.
resource dataFactoryOnKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, dataFactoryPrincipalId, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    principalId: dataFactoryPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

// The system topics write undeliverable events to the dead-letter container, and nowhere else.
resource lakeTopicOnDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, dataLakeTopicPrincipalId, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    principalId: dataLakeTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource amlTopicOnDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, amlTopicPrincipalId, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    principalId: amlTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// The operator drops test files into the lake and stores the function key in the vault.
resource operatorOnDataLake 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(dataLake.id, operatorPrincipalId, roles.storageBlobDataContributor)
  scope: dataLake
  properties: {
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource operatorOnKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(keyVault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}
