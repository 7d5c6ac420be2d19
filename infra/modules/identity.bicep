metadata description = 'User-assigned managed identity the function app uses for every outbound call.'

@description('Name of the identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output resourceId string = identity.id

@description('Client (application) id: what AZURE_CLIENT_ID and X__clientId settings name.')
output clientId string = identity.properties.clientId

@description('Object id of the service principal: what role assignments grant to.')
output principalId string = identity.properties.principalId

@description('Name of the identity.')
output name string = identity.name
