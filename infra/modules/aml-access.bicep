metadata description = 'Deployed into the Azure ML workspace resource group: what this deployment adds to the existing workspace. The app identity may run jobs and register models; an identity-based datastore over the data lake\'s conditioned container; a compute cluster whose identity reads it; the workspace storage roles that job submission and output download need; and the workspace\'s Event Grid system topic, created here unless the workspace already has one.'

@description('Name of the existing Azure ML workspace.')
param workspaceName string

@description('Name of the workspace system topic.')
param systemTopicName string

@description('Create the system topic (true), or use the one the workspace already has (false): a workspace has at most one, and another deployment or team may own it.')
param createSystemTopic bool

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Name of the datastore over the conditioned container (MLOPS_AML_DATASTORE): letters, digits and underscores.')
param datastoreName string

@description('Name of the data lake storage account.')
param dataLakeAccountName string

@description('Resource group of the data lake storage account.')
param dataLakeResourceGroupName string

@description('Container of conditioned data the datastore is rooted at.')
param conditionedContainerName string

@description('Name of the compute cluster the app\'s jobs run on (MLOPS_AML_COMPUTE): 2-16 letters, digits or hyphens.')
param computeName string

@description('VM size of the compute cluster nodes.')
param computeVmSize string

@description('Most nodes the compute cluster scales out to (it scales in to none when idle).')
@minValue(1)
param computeMaxNodes int

@description('Tags applied to what this module creates.')
param tags object = {}

// AzureML Data Scientist: submit and cancel jobs, read metrics, register and tag models, create
// data assets; no workspace admin.
var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
// Storage Blob Data Contributor: job submission writes the step code, reading an output reads
// it, and a job writes its outputs, all in the workspace's default blob container.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

// The workspace's default datastore: its container is where code snapshots and job outputs go.
resource defaultDatastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-10-01' existing = {
  parent: workspace
  name: 'workspaceblobstore'
}

resource appOnWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, azureMlDataScientist)
  scope: workspace
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
  }
}

// Identity-based: no account key or SAS is stored (the lake has shared keys disabled). A job
// reads through it with the compute cluster's identity; studio previews use the user's own.
resource conditionedDatastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-10-01' = {
  parent: workspace
  name: datastoreName
  properties: {
    datastoreType: 'AzureBlob'
    description: 'Conditioned data of the MLOps automation (container ${conditionedContainerName} of ${dataLakeAccountName}).'
    accountName: dataLakeAccountName
    containerName: conditionedContainerName
    endpoint: environment().suffixes.storage
    protocol: 'https'
    resourceGroup: dataLakeResourceGroupName
    subscriptionId: subscription().subscriptionId
    serviceDataAccessAuthIdentity: 'None'
    credentials: {
      credentialsType: 'None'
    }
    tags: tags
  }
}

resource compute 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {
  parent: workspace
  name: computeName
  location: workspace.location
  tags: tags
  // The identity jobs read the conditioned data with (identity-based datastore).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    computeType: 'AmlCompute'
    description: 'Jobs of the MLOps automation.'
    properties: {
      vmSize: computeVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: computeMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT15M'
      }
    }
  }
}

// The workspace storage account may live in another resource group: a module reaches it.
module workspaceStorage 'aml-workspace-storage.bicep' = {
  name: 'aml-workspace-storage-${uniqueString(workspace.id, computeName)}'
  params: {
    storageAccountId: workspace.properties.storageAccount
    containerName: any(defaultDatastore.properties).containerName
    appPrincipalId: appPrincipalId
    computePrincipalId: compute.identity.principalId
    roleId: storageBlobDataContributor
  }
}

resource newSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createSystemTopic) {
  name: systemTopicName
  location: workspace.location
  tags: tags
  // The identity writes undeliverable events to the dead-letter container.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// A topic this deployment did not create is only read, never redeployed (its tags and its
// teardown stay its owner's).
resource sharedSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!createSystemTopic) {
  name: systemTopicName
}

@description('Name of the workspace system topic.')
output systemTopicName string = systemTopicName

@description('Principal id of the system topic identity.')
output systemTopicPrincipalId string = createSystemTopic
  ? newSystemTopic!.identity.principalId
  : sharedSystemTopic!.identity.principalId

@description('Resource id of the workspace.')
output workspaceId string = workspace.id

@description('Principal id of the compute cluster identity.')
output computePrincipalId string = compute.identity.principalId
